"""`mrs-tui eval` (the paper's offline evaluation) and `mrs-tui train` (fit on the history).

Both run their work in a helper thread so Ctrl-C sets a cancel event and returns what was
finished (eval prints the partial table; train saves nothing).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from mrs_tui.commands.shared import ProgressLine, emit, open_engine
from mrs_tui.errors import UserError


def _csv_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _ks(values: list[str] | None) -> tuple[int, ...]:
    parts = _csv_list(values) or ["50"]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"-k takes whole numbers, got {', '.join(parts)}", "e.g. -k 50 or -k 10,50") from None


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "eval",
        parents=[common],
        help="measure backends x recommenders offline (the paper's protocol)",
        description="Evaluate recommenders on your history (sessions as contexts) or on an imported log "
        "(users as contexts): HitRate, Recall and NDCG @K, mean ± 95% confidence half-width.",
    )
    p.add_argument("--log", metavar="FILE", help="play log (user_id, track_id, timestamp): TSV, CSV or parquet")
    p.add_argument(
        "--embeddings",
        metavar="NPY",
        action="append",
        help="embedding matrix, one row per track (repeat for several backends; named after the file)",
    )
    p.add_argument("--track-ids", metavar="FILE", help="track id of each embedding row, one per line")
    p.add_argument("--split-dir", metavar="DIR", help="pre-made split: train, val, hot_test, cold_test files")
    p.add_argument("--library-root", metavar="DIR", help="folder the log's relative track paths start from")
    p.add_argument("--test-date", metavar="YYYY-MM-DD", help="default: the last month of the log is the test month")
    p.add_argument("-k", action="append", metavar="K", help="cut-off(s), e.g. -k 10,50 (default 50)")
    p.add_argument("--backends", action="append", metavar="A,B", help="backends to compare (default: all available)")
    p.add_argument("--recommenders", action="append", metavar="X,Y", help="recommenders (default: all, + knn+zscore)")
    p.add_argument("--contexts", choices=["auto", "users", "sessions"], default="auto")
    p.add_argument(
        "--candidates",
        choices=["auto", "split", "all"],
        default="auto",
        help="tracks ranked: split = train + cold test items (paper), all = every item with vectors",
    )
    # The option's earlier name, kept so existing scripts run.
    p.add_argument("--catalogue", dest="candidates", choices=["auto", "split", "all"], help=argparse.SUPPRESS)
    p.add_argument("--val-share", type=float, default=0.3, help="share of test contexts held out (paper: 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the recommenders")
    p.add_argument("--seeds", metavar="0,1,2", help="fit each learned cell once per seed: mean and spread over seeds")
    p.add_argument(
        "--selection",
        choices=["auto", "validation", "fixed"],
        default="auto",
        help="how learned models choose their checkpoint (auto: by validation when the part is large enough)",
    )
    p.add_argument(
        "--paper-compat",
        action="store_true",
        help="every recommender as the paper's published code behaves (NAME+paper rows do it for one)",
    )
    p.add_argument(
        "--negatives",
        choices=["auto", "on", "off", "both"],
        default="auto",
        help="skips and dislikes as negatives for learned models; both: NAME without, NAME+neg with, same seeds",
    )
    p.add_argument("--paper-cold-k", action="store_true", help="cold part at K=50, as the code's cold '@20' columns")
    p.add_argument(
        "--paired",
        action="append",
        metavar="B:R,B:R",
        help="paired test of two cells over the same hot contexts, e.g. musicnn:knn,musicnn:shallow",
    )
    p.add_argument("--quick", action="store_true", help="short training (each recommender's quick settings)")
    p.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    p.add_argument("--no-store", action="store_true", help="do not keep this run in the database")
    p.add_argument("--runs", action="store_true", help="list past runs instead")
    p.add_argument("--show", type=int, metavar="ID", help="print a past run")
    p.add_argument(
        "--ray",
        metavar="auto|local|ray://HOST:PORT",
        help="run the grid's cells as tasks on a Ray cluster (same results as a local run)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run_eval)

    p = sub.add_parser("train", parents=[common], help="train recommenders on the play history")
    p.add_argument("--recommenders", action="append", metavar="X,Y", help="default: every trainable recommender")
    p.add_argument("--backend", help="backend whose vectors the models use (default: the current one)")
    p.add_argument("--if-due", action="store_true", help="only models with enough new plays since their training")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run_train)


def _in_thread(work, cancel: threading.Event):
    """Run `work()` in a thread; Ctrl-C sets `cancel` and waits for it to stop."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="mrs-tui-work", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        cancel.set()
        print("\nmrs-tui: stopping after the current step…", file=sys.stderr)
        thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _dataset(args: argparse.Namespace, engine, backends: list[str] | None):
    """The dataset the flags name: an imported log or split folder; None for the play history."""
    from mrs_tui.evaluation import datasets

    if args.embeddings and not (args.log or args.split_dir):
        raise UserError("--embeddings needs a play log", "add --log FILE (or --split-dir DIR)")
    if args.track_ids and not args.embeddings:
        raise UserError("--track-ids belongs to --embeddings", "add --embeddings FILE.npy")
    if args.log and args.split_dir:
        raise UserError("give either --log or --split-dir", "a split folder already holds its log")
    library_backends = backends or engine.indexed_backends()
    if not args.embeddings and not library_backends:
        raise UserError("no backend has analysed the library yet", "run mrs-tui index FOLDER first")
    common = dict(
        embeddings=args.embeddings or (),
        track_ids=args.track_ids,
        store=engine.store,
        backends=library_backends,
        version_of=engine.version,
        library_root=args.library_root,
    )
    if args.split_dir:
        return datasets.split_dir_dataset(args.split_dir, **common)
    if args.log:
        return datasets.log_dataset(args.log, **common)
    return None


def run_eval(args: argparse.Namespace) -> int:
    from mrs_tui.evaluation import runner

    engine = open_engine(args)
    store = engine.store
    if args.runs:
        runs = runner.list_runs(store)

        def listing() -> str:
            if not runs:
                return "no evaluation run yet: mrs-tui eval"
            lines = []
            for r in runs:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"]))
                best = r["best_hot_ndcg"]
                top = f"best hot NDCG {best['value']:.3f} ({best['recommender']} on {best['backend']})" if best else ""
                lines.append(f"{r['id']:4d}  {when}  {r['dataset']} ({r['protocol']})  {top}")
            return "\n".join(lines)

        emit(args, runs, listing)
        return 0
    if args.show is not None:
        run = runner.load_run(store, args.show)
        emit(args, run.to_dict(), run.table)
        return 0

    cells = None
    if args.ray:
        from mrs_tui.cluster import ClusterOptions, require_ray
        from mrs_tui.cluster.grid import RayCells

        require_ray()
        cells = RayCells(ClusterOptions(args.ray))
    backends = _csv_list(args.backends)
    settings = runner.EvalSettings(
        ks=_ks(args.k),
        backends=backends,
        recommenders=_csv_list(args.recommenders),
        test_date=args.test_date,
        contexts=args.contexts,
        candidates=args.candidates,
        val_share=args.val_share,
        model_seed=args.seed,
        seeds=_seeds(args.seeds),
        selection=args.selection,
        paper_compat=args.paper_compat,
        paper_cold_k=args.paper_cold_k,
        negatives=args.negatives,
        quick=args.quick,
    )
    pairs = [_pair(value) for value in args.paired or ()]
    dataset = _dataset(args, engine, backends)
    line = ProgressLine(args.json or args.quiet)
    cancel = threading.Event()

    def progress(done: float, total: float, message: str) -> None:
        line(f"[{done:5.1f}/{total:.0f}] {message}")

    run = _in_thread(
        lambda: engine.evaluate(
            settings, dataset=dataset, keep=not args.no_store, progress=progress, cancel=cancel, cells=cells
        ),
        cancel,
    )
    line(f"evaluated {len(run.cells)} cells in {run.seconds:.1f} s", final=True)
    if args.csv:
        Path(args.csv).expanduser().write_text(run.to_csv(), encoding="utf-8")
    tests = [(a, b, *run.paired(a, b)) for a, b in pairs if not run.cancelled]
    data = {
        **run.to_dict(),
        "paired": [{"a": list(a), "b": list(b), **r.as_dict(), "verdict": v} for a, b, r, v in tests],
    }
    emit(args, data, lambda: "\n".join([run.table(), *(v for *_, v in tests)]))
    return 130 if run.cancelled else 0


def _seeds(value: str | None) -> tuple[int, ...] | None:
    parts = _csv_list([value]) if value else None
    if not parts:
        return None
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--seeds takes whole numbers, got {value}", "e.g. --seeds 0,1,2") from None


def _pair(value: str) -> tuple[tuple[str, str], tuple[str, str]]:
    cells = [part.strip() for part in value.split(",")]
    if len(cells) != 2 or not all(":" in c for c in cells):
        raise UserError(f"--paired takes two cells BACKEND:RECOMMENDER, got {value!r}", "e.g. musicnn:knn,mfcc:knn")
    a, b = (tuple(c.split(":", 1)) for c in cells)
    return a, b


def run_train(args: argparse.Namespace) -> int:
    import recommenders

    engine = open_engine(args)
    backend = args.backend or engine.backend
    trainable = [n for n, s in recommenders.REGISTRY.items() if s.trainable]
    names = _csv_list(args.recommenders) or trainable
    if not names:
        raise UserError(
            "no installed recommender learns from history in advance",
            "knn and popular are fitted on the fly; nothing to train",
        )
    out = []
    if args.if_due:
        # Named models train when due; otherwise the app's background rule decides which.
        due = [n for n in names if engine.retrain_due(n, backend)] if args.recommenders else engine.due_models(backend)
        for name in names:
            if name not in due:
                reason = "not due" if not engine.retrain_due(name, backend) else "never trained: name it to train it"
                out.append({"recommender": name, "backend": backend, "trained": False, "reason": reason})
        names = due
    line = ProgressLine(args.json or args.quiet)
    cancel = threading.Event()

    def progress(name: str, done: float, total: float, message: str) -> None:
        share = f"{100 * done / total:3.0f}% " if total else ""
        line(f"training {name} on {backend}: {share}{message}")

    outcomes = _in_thread(lambda: list(engine.train_models(names, backend, progress=progress, cancel=cancel)), cancel)
    failed = []
    for outcome in outcomes:
        if outcome.cancelled:
            line(outcome.describe(), final=True)
            return 130
        if outcome.error is not None:
            failed.append(outcome)
            out.append(
                {"recommender": outcome.recommender, "backend": backend, "trained": False, "reason": outcome.error}
            )
            continue
        line(f"trained {outcome.recommender} on {backend} in {outcome.seconds:.1f} s", final=True)
        info = engine.model_info(outcome.recommender, backend)
        out.append(
            {**info.to_dict(), "trained": True, "seconds": round(outcome.seconds, 3), "model_id": outcome.record.id}
        )

    def text() -> str:
        lines = []
        for entry in out:
            if not entry["trained"]:
                lines.append(f"{entry['recommender']} on {entry['backend']}: {entry['reason']}")
            else:
                lines.append(engine.model_info(entry["recommender"], entry["backend"]).describe())
        return "\n".join(lines)

    if failed and not any(entry["trained"] for entry in out):
        # Nothing was trained: the one-line error of the (first) model that could not be.
        raise UserError(failed[0].error)
    emit(args, out, text)
    for outcome in failed:
        print(f"mrs-tui: error: {outcome.describe()}", file=sys.stderr)
    return 2 if failed else 0
