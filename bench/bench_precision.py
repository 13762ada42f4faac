"""Seconds per 30-s clip of the heavy backends at fp32 and each reduced precision, with fidelity beside.

Real-size models with random weights (speed depends on the architecture, not on the values),
written by `backends.testing.write_random_checkpoint` and loaded through `load()`. One
subprocess per backend holds the model at every precision and times them alternately
(fp32, int8, fp32, int8, ... on the same clip), so a busy machine slows each alike and the
ratio stays fair; the best of the repeats is reported.

Columns: s/clip at batch 1 for each precision; fp32 at its best batch (int8 always runs one
clip per forward, see backends/_precision.py); the speed-up of each precision over fp32 at
batch 1; the resident memory each model adds; the process's peak RSS; and fidelity on real
audio (`--clips`, cut into 5-s excerpts): the lowest cosine to fp32 and the share of excerpts
with the same top-10 neighbours. Random weights make the fidelity figures an estimate of the
quantisation error of the architecture, not a guarantee for the trained weights: run
`mrs-tui backends check-precision NAME --precision int8` on the real weights for that.

bf16 is timed even where the CPU lacks bfloat16 instructions (the backends refuse it there);
the table marks it "emulated" so the figure explains the refusal.

    python bench/bench_precision.py --clips FOLDER                          # all, fp32 + int8
    python bench/bench_precision.py --backends music2vec --precisions fp32,int8,bf16 --clips FOLDER
    python bench/bench_precision.py --quick --clips FOLDER                  # tiny models: checks the script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_backends import _clips, _peak_rss_mb, _rss_mb, _subprocess, add_child_arguments  # noqa: E402

# (label, backend, options) of the heavy backends that take a precision option.
TARGETS = {
    "mert-95m": ("mert", {"variant": "95m"}),
    "mert-330m": ("mert", {}),
    "musicfm": ("musicfm", {}),
    "muq": ("muq", {}),
    "music2vec": ("music2vec", {}),
}


def write_checkpoint(label: str, folder: Path, size: str) -> None:
    from backends.testing import write_random_checkpoint

    name, options = TARGETS[label]
    write_random_checkpoint(name, folder, size=size, seed=0, **options)


def measure(label: str, folder: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from backends import _precision, load_backend
    from mrs_tui import precision_check

    torch.set_num_threads(args.threads)
    native_bf16 = _precision.cpu_has_native_bf16()
    _precision.cpu_has_native_bf16 = lambda: True  # time bf16 even where it is emulated (see the doc)
    name, options = TARGETS[label]
    import transformers  # noqa: F401  imported before the first RSS reading, so it is not counted as model

    from backends import backend_class

    backend_class(name)
    models, resident_mb = {}, {}
    for precision in args.precisions:
        before = _rss_mb()
        models[precision] = load_backend(name, folder, precision=precision, **options)
        resident_mb[precision] = _rss_mb() - before
    clips = _clips(models["fp32"].sample_rate, args.seconds, max(args.batches), seed=1)
    for model in models.values():  # warm-up: allocator, kernel selection, quantised weight packing
        model.embed([clips[0][: int(3 * model.sample_rate)]])

    times: dict[str, list[float]] = {p: [] for p in args.precisions}
    for _ in range(args.repeats):
        for precision, model in models.items():  # alternating, on the same clip
            started = time.perf_counter()
            model.embed(clips[:1])
            times[precision].append(time.perf_counter() - started)
    batched: dict[int, float] = {}
    fp32 = models["fp32"]
    for batch in args.batches:
        if batch > 1:
            fp32.batch_size = batch
            started = time.perf_counter()
            fp32.embed(clips[:batch])
            batched[batch] = (time.perf_counter() - started) / batch
    fp32.batch_size = 1

    fidelity = {}
    if args.clips:
        paths = precision_check.audio_files(Path(args.clips))[: args.files]
        _names, waves = precision_check.excerpts(paths, fp32.sample_rate, args.excerpt_seconds)
        vectors = {p: np.concatenate([m.embed([w]) for w in waves]) for p, m in models.items()}
        for precision in args.precisions[1:]:
            cosines, same, k = precision_check.compare(vectors["fp32"], vectors[precision], precision_check.DEFAULT_K)
            fidelity[precision] = {
                "excerpts": len(waves),
                "k": k,
                "min_cosine": float(cosines.min()),
                "mean_cosine": float(cosines.mean()),
                "same_neighbours_share": float(same.mean()),
            }
    batch1 = {p: min(v) for p, v in times.items()}
    best_batch = min([1, *batched], key=lambda b: batch1["fp32"] if b == 1 else batched[b])
    return {
        "label": label,
        "batch1_s": batch1,
        "fp32_best_batch": best_batch,
        "fp32_best_s": batch1["fp32"] if best_batch == 1 else batched[best_batch],
        "speedup": {p: batch1["fp32"] / s for p, s in batch1.items()},
        "resident_mb": resident_mb,
        "peak_rss_mb": _peak_rss_mb(),
        "fidelity": fidelity,
        "native_bf16": native_bf16,
    }


def run_one(label: str, args: argparse.Namespace, common: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-precision-{label}-") as tmp:
        folder = Path(tmp) / "weights"
        done = _subprocess(["--write", label, str(folder), "--size", "tiny" if args.quick else "real"], 1800, __file__)
        if done.returncode != 0:
            return {"label": label, "error": "writing the checkpoint failed: " + done.stderr.strip()[-200:]}
        done = _subprocess(["--worker", label, "--weights", str(folder), *common], args.timeout, __file__)
        if done.returncode != 0:
            return {"label": label, "error": done.stderr.strip()[-300:]}
        return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    size = "tiny (QUICK)" if args.quick else "real size, random weights"
    print(f"\nheavy backends, {size}, {args.seconds:g}-s clip, cpu, {args.threads} threads, best of {args.repeats}")
    others = args.precisions[1:]
    header = f"{'backend':10s} {'fp32 b=1':>9s} {'fp32 best':>12s}"
    for p in others:
        header += f" {p + ' b=1':>9s} {'speed-up':>8s}"
    header += f" {'model MB':>16s} {'peak RSS':>8s}"
    for p in others:
        header += f" {p + ' min cos':>13s} {'same top-10':>11s}"
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['label']:10s} ERROR: {r['error']}")
            continue
        line = f"{r['label']:10s} {r['batch1_s']['fp32']:9.2f} {r['fp32_best_s']:8.2f} b={r['fp32_best_batch']}"
        for p in others:
            mark = "*" if p == "bf16" and not r["native_bf16"] else " "
            line += f" {r['batch1_s'][p]:8.2f}{mark} {r['speedup'][p]:7.2f}x"
        line += " " + "/".join(f"{r['resident_mb'][p]:.0f}" for p in args.precisions).rjust(16)
        line += f" {r['peak_rss_mb'] / 1024:6.2f}GB"
        for p in others:
            f = r["fidelity"].get(p)
            line += f" {f['min_cosine']:13.5f} {f['same_neighbours_share']:10.0%}" if f else f" {'-':>13s} {'-':>11s}"
        print(line)
    print(f"model MB: resident memory each model adds ({'/'.join(args.precisions)}); all held in one process.")
    if any(not r.get("native_bf16", True) for r in results if "error" not in r) and "bf16" in others:
        print("* bf16 emulated: this CPU has no AVX-512-BF16/AMX; the backends refuse precision=bf16 here.")
    if results and args.clips:
        f = next((r["fidelity"] for r in results if r.get("fidelity")), {})
        sample = next(iter(f.values()), None)
        if sample:
            print(
                f"fidelity: {sample['excerpts']} excerpts of {args.excerpt_seconds:g} s from --clips, top-{sample['k']}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(TARGETS), help=f"comma-separated, of: {', '.join(TARGETS)}")
    parser.add_argument("--precisions", default="fp32,int8", help="fp32 first, then any of int8, bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 30; quick: 5)")
    parser.add_argument("--batches", default="1,2", help="fp32 batch sizes to try")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clips", metavar="FOLDER", help="real audio for the fidelity columns")
    parser.add_argument("--files", type=int, default=3, help="files of --clips used")
    parser.add_argument("--excerpt-seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", metavar="PATH")
    add_child_arguments(parser)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5.0 if args.quick else 30.0)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.precisions[0] != "fp32":
        args.precisions.insert(0, "fp32")
    args.batches = sorted({int(b) for b in args.batches.split(",")} | {1})
    if args.write:
        write_checkpoint(args.write[0], Path(args.write[1]), args.size)
        return 0
    if args.worker:
        print(json.dumps(measure(args.worker, args.weights, args)))
        return 0
    labels = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in labels if b not in TARGETS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (choose from {', '.join(TARGETS)})")
    common = ["--threads", str(args.threads), "--seconds", str(args.seconds), "--repeats", str(args.repeats)]
    common += ["--precisions", ",".join(args.precisions), "--batches", ",".join(map(str, args.batches))]
    common += ["--files", str(args.files), "--excerpt-seconds", str(args.excerpt_seconds)]
    common += ["--clips", str(Path(args.clips).resolve())] if args.clips else []
    results = []
    for label in labels:
        print(f"... {label}", file=sys.stderr, flush=True)
        result = run_one(label, args, common)
        results.append(result)
        if "batch1_s" in result:
            print(f"    {label}: {json.dumps(result['batch1_s'])}", file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
