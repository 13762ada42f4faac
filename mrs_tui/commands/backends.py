"""`mrs-tui backends` (list, fetch, check-precision) and `mrs-tui embed`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrs_tui.commands.shared import emit, load_settings, parse_backend_options
from mrs_tui.errors import UserError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backends", parents=[common], help="list backends, fetch weights, or check a precision")
    p.add_argument("action", nargs="?", default="list", choices=["list", "fetch", "check-precision"])
    p.add_argument("name", nargs="?")
    p.add_argument("--from", dest="source", metavar="FOLDER", help="take weights from a local folder or file")
    p.add_argument("--revision", help="hub revision (commit, tag) to download")
    p.add_argument("--allow-pickle", action="store_true", help="allow checkpoints that need full unpickling")
    p.add_argument("--precision", choices=["int8", "bf16"], help="check-precision: the precision compared with fp32")
    p.add_argument(
        "--clips", metavar="FOLDER", help="check-precision: audio files to compare on (default: the library's tracks)"
    )
    p.add_argument("--weights", metavar="PATH", help="check-precision: weights folder (default: the user cache)")
    p.add_argument("--excerpt-seconds", type=float, default=5.0, help="check-precision: length of each excerpt")
    p.add_argument("--limit", type=int, default=20, help="check-precision: at most this many library tracks")
    p.add_argument(
        "--backend-option", action="append", metavar="KEY=VALUE", help="check-precision: another backend option"
    )
    p.set_defaults(run=run_backends)

    p = sub.add_parser("embed", parents=[common], help="print the embedding of audio files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--backend")
    p.add_argument("--weights", metavar="PATH", help="weights folder (default: the user cache)")
    p.add_argument("--frames", action="store_true", help="also print per-frame vectors (and MusiCNN's taggram)")
    p.add_argument("--paper-compat", action="store_true")
    p.add_argument(
        "--backend-option", action="append", metavar="KEY=VALUE", help="a backend option, e.g. model=mtt (repeatable)"
    )
    p.set_defaults(run=run_embed)


def run_backends(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        return _backends_fetch(args)
    if args.action == "check-precision":
        return _backends_check_precision(args)
    from mrs_tui.engine import backend_rows

    rows = [row.to_dict() for row in backend_rows()]

    def text() -> str:
        lines = [f"{'backend':11s} {'status':16s} {'dim':>5s} {'s/track':>8s}  licence of weights"]
        for r in rows:
            mark = "*" if r["default"] else " "
            secs = (
                "GPU"
                if r["needs_gpu"]
                else (f"{r['seconds_per_track_cpu']:.2f}" if r["seconds_per_track_cpu"] is not None else "?")
            )
            lines.append(f"{mark}{r['name']:10s} {r['status']:16s} {r['dim']:5d} {secs:>8s}  {r['weights_license']}")
            if r["detail"]:
                lines.append(f"{'':12s}{r['detail']}")
            elif r["source"]:
                lines.append(f"{'':12s}weights from {r['source']}")
        lines.append("* default backend.  s/track: expected seconds per 30-s clip on this CPU.")
        return "\n".join(lines)

    emit(args, rows, text)
    return 0


def _backends_fetch(args: argparse.Namespace) -> int:
    from backends import fetch_weights, get_spec

    if not args.name:
        raise UserError("which backend?", "usage: mrs-tui backends fetch NAME [--from FOLDER]")
    spec = get_spec(args.name)
    path = fetch_weights(spec.name, source=args.source, allow_pickle=args.allow_pickle, revision=args.revision)
    if path is None:
        emit(args, {"name": spec.name, "path": None}, f"{spec.name} needs no weights")
        return 0
    emit(args, {"name": spec.name, "path": str(path)}, f"{spec.name}: weights ready in {path}")
    return 0


def _backends_check_precision(args: argparse.Namespace) -> int:
    """Compare a precision with fp32 on real audio; exit status 1 when it misses the thresholds."""
    import sys

    from backends import get_spec
    from mrs_tui.commands.shared import open_store
    from mrs_tui.precision_check import audio_files, check_precision

    if not args.name or not args.precision:
        raise UserError("which backend and precision?", "usage: mrs-tui backends check-precision NAME --precision int8")
    spec = get_spec(args.name)
    if "precision" not in spec.options:
        offered = ", ".join(s.name for s in _backend_specs() if "precision" in s.options)
        raise UserError(f"backend {spec.name!r} has no precision option", f"backends that have one: {offered}")
    if args.clips:
        paths = audio_files(Path(args.clips))
    else:
        store = open_store(args)
        paths = [Path(t.path) for t in store.tracks(status="ok")[: max(2, args.limit)]]
        if len(paths) < 2:
            raise UserError(
                "the library has fewer than two readable tracks", "give a folder of audio files with --clips"
            )
    if args.excerpt_seconds <= 0:
        raise UserError("--excerpt-seconds must be positive", "e.g. --excerpt-seconds 5")
    options = parse_backend_options(getattr(args, "backend_option", None))
    quiet = getattr(args, "json", False)
    report = check_precision(
        spec.name,
        args.precision,
        paths,
        weights=args.weights,
        options=options,
        excerpt_seconds=args.excerpt_seconds,
        progress=None if quiet else (lambda line: print(f"  {line}", file=sys.stderr, flush=True)),
    )
    emit(args, report.to_dict(), report.summary)
    return 0 if report.passed else 1


def _backend_specs():
    from backends import list_specs

    return list_specs()


_EMBED_BATCH = 8  # files analysed per backend call: enough to batch, few enough to keep memory small


def run_embed(args: argparse.Namespace) -> int:
    """Print each file's track vector; with --frames also the per-frame vectors (and MusiCNN's taggram)."""
    import sys

    import numpy as np

    from backends import backend_status, default_backend_name, load_backend
    from mrs_tui.audio import probe
    from mrs_tui.config import Settings
    from mrs_tui.errors import AudioDecodeError
    from mrs_tui.indexing import Indexer
    from mrs_tui.store import Track

    settings = load_settings(args)
    paths = [Path(file).expanduser() for file in args.files]
    for path in paths:
        if not path.is_file():
            raise UserError(
                f"{path} does not exist" if not path.exists() else f"{path} is not a file", "check the name"
            )
    requested = args.backend or settings.backend
    name = default_backend_name(requested)
    if not requested and name != "musicnn":
        status = backend_status("musicnn")
        print(f"mrs-tui: note: MusiCNN is not ready ({status.detail}); using {name}", file=sys.stderr)
    options = parse_backend_options(getattr(args, "backend_option", None))
    if args.paper_compat:
        options["paper_compat"] = True
    backend = load_backend(name, args.weights, **options)
    with_frames = args.frames and hasattr(backend, "analyze_frames")
    # The indexer's own decode -> excerpt -> resample path, so `embed` prints what `index` stores.
    indexer = Indexer(None, [backend], clip_position=settings.clip_position or Settings().clip_position)

    results: list[dict] = []
    for first in range(0, len(paths), _EMBED_BATCH):
        batch = paths[first : first + _EMBED_BATCH]
        waves, windows = [], []
        for path in batch:
            try:
                track = Track(0, str(path), duration=probe(path).duration)
                ((start, wave),) = indexer.excerpts(track, [backend])
            except AudioDecodeError as exc:
                raise UserError(f"{path}: {exc}", "check that the file plays") from exc
            waves.append(wave)
            windows.append(start)
        analyses = (backend.analyze_frames if with_frames else backend.analyze)(waves)
        for path, start, wave, analysis in zip(batch, windows, waves, analyses, strict=True):
            extras = dict(analysis.extras or {})
            entry: dict = {
                "file": str(path),
                "backend": name,
                "version": backend.version,
                "dim": int(analysis.vector.shape[-1]),
                "excerpt": {"start": round(start, 3), "seconds": round(len(wave) / backend.sample_rate, 3)},
                "embedding": np.asarray(analysis.vector, np.float32).tolist(),
            }
            if "tags" in extras:
                entry["tags"] = extras.pop("tags")
            if args.frames:
                frames = analysis.frames
                entry["frames"] = None if frames is None else np.asarray(frames, np.float32).tolist()
                entry.update(extras)
            results.append(entry)

    def vector_lines(vector: list[float], indent: str) -> list[str]:
        return [indent + " ".join(f"{x:+.5f}" for x in vector[i : i + 10]) for i in range(0, len(vector), 10)]

    def text() -> str:
        lines = []
        for r in results:
            head = f"{r['file']}: {r['backend']} {r['version']}, dim {r['dim']}"
            head += f", excerpt {r['excerpt']['start']:.1f}+{r['excerpt']['seconds']:.1f} s"
            if r.get("frames"):
                head += f", {len(r['frames'])} frames"
            lines.append(head)
            if r.get("tags"):
                lines.append("  sounds like: " + ", ".join(f"{tag} {p:.2f}" for tag, p in r["tags"][:5]))
            lines.append(f"  embedding (|v| = {float(np.linalg.norm(r['embedding'])):.4f}):")
            lines += vector_lines(r["embedding"], "    ")
            if args.frames and r.get("frames") is None:
                lines.append(f"  frames: {r['backend']} has no per-frame output")
            step = r.get("patch_seconds")
            for i, frame in enumerate(r.get("frames") or []):
                when = f" at {r['excerpt']['start'] + i * step:.1f} s" if step else ""
                lines.append(f"  frame {i}{when}:")
                lines += vector_lines(frame, "    ")
            if r.get("taggram"):
                names = r["tag_names"]
                taggram = np.asarray(r["taggram"])
                top = np.argsort(-taggram.mean(axis=0), kind="stable")[:6]
                width = max(len(names[j]) for j in top)
                lines.append(f"  taggram (top {len(top)} tags, per patch):")
                for j in top:
                    lines.append(f"    {names[j]:{width}s} " + " ".join(f"{p:.2f}" for p in taggram[:, j]))
        return "\n".join(lines)

    emit(args, results, text)
    return 0
