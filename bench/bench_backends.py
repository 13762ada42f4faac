"""Seconds per 30-s clip and peak memory of every backend, at real size with random weights.

Speed depends on the architecture, not on the weights' values, so each backend writes a
randomly initialised checkpoint of its real dimensions (`backends.testing.write_random_checkpoint`,
in the upstream file layout) and loads it through its normal `load()`. Tiny test models say
nothing about speed.

Each backend runs in its own subprocess, so the peak resident memory (VmHWM, which counts what
torch allocates outside Python, unlike tracemalloc) is that backend's alone: load plus
inference. Writing the checkpoint happens in another subprocess and is not counted. The MFCC
backend, which needs no weights, is the baseline measured in the same run.

For each backend: load time, seconds per clip at batch 1 and at the best of a few batch sizes
(the backend's own per-forward batch cap is raised to the batch under test), peak RSS, and
the largest difference between a clip's vector computed alone and inside the batch (on CPU
it should be float noise). Threads are fixed with `torch.set_num_threads` (2 by default, the
size of our dev and CI machines).

    nice -n 10 python bench/bench_backends.py                     # all backends, CPU, 2 threads
    python bench/bench_backends.py --backends music2vec,mert --batches 1,2
    python bench/bench_backends.py --device cuda --batches 1,8,16
    python bench/bench_backends.py --quick                        # tiny models, 5-s clips: checks the script

Jukebox is skipped on CPU (5 B parameters; it needs a >=13 GB GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BASELINE = "mfcc"


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _clips(sample_rate: int, seconds: float, count: int, seed: int = 0):
    """Music-like test signals: a few harmonic tones with a pulse, plus a little noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    clips = []
    for index in range(count):
        freqs = 110.0 * 2 ** (rng.integers(0, 24, 3) / 12)
        tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in freqs) / 3
        pulse = 0.5 + 0.5 * np.cos(2 * np.pi * (1.5 + index) * t) ** 2
        clips.append((0.5 * tone * pulse + 0.02 * rng.standard_normal(n)).astype(np.float32))
    return clips


def _parameters(backend) -> int:
    import torch

    seen: set[int] = set()
    total = 0
    for value in vars(backend).values():
        if isinstance(value, torch.nn.Module):
            for p in value.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


# -- subprocess entry points ---------------------------------------------------------------


def write_checkpoint(name: str, folder: Path, size: str) -> None:
    from backends.testing import write_random_checkpoint

    write_random_checkpoint(name, folder, size=size, seed=0)


def measure(name: str, folder: str | None, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from backends import load_backend

    options = {"device": args.device} if args.device else {}
    started = time.perf_counter()
    backend = load_backend(name, folder, **options)
    load_seconds = time.perf_counter() - started
    rss_after_load = _rss_mb()
    cuda = args.device == "cuda"

    def timed(clips) -> tuple[float, np.ndarray]:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        vectors = backend.embed(clips)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, vectors

    timed(_clips(backend.sample_rate, min(3.0, args.seconds), 1, seed=99))  # warm-up: allocator, kernels
    clips = _clips(backend.sample_rate, args.seconds, max(args.batches), seed=1)
    per_clip: dict[int, float] = {}
    single = None
    max_diff = 0.0
    for batch in args.batches:
        if hasattr(backend, "batch_size"):
            backend.batch_size = batch  # instance attribute: lets one forward take the whole batch
        seconds, vectors = timed(clips[:batch])
        per_clip[batch] = seconds / batch
        if batch == 1:
            single = vectors[0]
        elif single is not None:
            max_diff = max(max_diff, float(np.abs(vectors[0] - single).max()))
    best = min(per_clip, key=per_clip.get)
    result = {
        "backend": name,
        "dim": int(backend.dim),
        "params_m": _parameters(backend) / 1e6,
        "load_s": load_seconds,
        "per_clip_s": {str(b): s for b, s in per_clip.items()},
        "batch1_s": per_clip.get(1),
        "best_batch": best,
        "best_s": per_clip[best],
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": _peak_rss_mb(),
        "batch_vs_single_max_diff": max_diff,
    }
    if cuda:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name()
    return result


# -- driver --------------------------------------------------------------------------------


def add_child_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags a script's child runs take (hidden from --help): `--write NAME FOLDER` writes a
    checkpoint of `--size`, `--worker NAME` measures one model, with `--weights` from a write."""
    parser.add_argument("--write", nargs=2, metavar=("NAME", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--size", default="real", help=argparse.SUPPRESS)
    parser.add_argument("--worker", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)


def _subprocess(argv: list[str], timeout: float, script: str = __file__) -> subprocess.CompletedProcess:
    """`script` (this file by default) again in a fresh interpreter, on this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, str(Path(script).resolve()), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _skip_reason(name: str, args: argparse.Namespace) -> str | None:
    from backends import get_spec

    spec = get_spec(name)
    if spec.needs_gpu and args.device != "cuda":
        return "needs a GPU (real size on CPU not attempted)"
    if not spec.needs_weights:
        return None
    from backends.testing import has_random_checkpoint

    if not has_random_checkpoint(name):
        return "has no random checkpoint writer in backends.testing"
    return None


def run_one(name: str, args: argparse.Namespace, common: list[str]) -> dict:
    from backends import get_spec

    spec = get_spec(name)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        folder = None
        write_s = 0.0
        if spec.needs_weights:
            folder = Path(tmp) / "weights"
            started = time.perf_counter()
            done = _subprocess(["--write", name, str(folder), "--size", "tiny" if args.quick else "real"], 1800)
            write_s = time.perf_counter() - started
            if done.returncode != 0:
                return {"backend": name, "error": "writing the checkpoint failed: " + _last_line(done.stderr)}
        worker = ["--worker", name] + (["--weights", str(folder)] if folder else []) + common
        done = _subprocess(worker, args.timeout)
        if done.returncode != 0:
            return {"backend": name, "error": _last_line(done.stderr)}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["write_s"] = write_s
        return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    where = f"{args.device or 'cpu'}, {args.threads} threads" + (", QUICK (tiny models)" if args.quick else "")
    print(f"\nbackends at {'tiny' if args.quick else 'real'} size, {args.seconds:g}-s clips, {where}")
    header = (
        f"{'backend':11s} {'params':>8s} {'load s':>7s} {'s/clip b=1':>11s} {'best s/clip':>12s} "
        f"{'vs mfcc':>8s} {'peak RSS':>9s} {'|b-1|max':>9s}"
    )
    print(header)
    print("-" * len(header))
    baseline = next((r.get("batch1_s") for r in results if r["backend"] == BASELINE and "error" not in r), None)
    for r in results:
        if "skipped" in r or "error" in r:
            print(f"{r['backend']:11s} {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR: ' + r['error']}")
            continue
        ratio = f"{r['batch1_s'] / baseline:7.0f}x" if baseline and r["batch1_s"] else "       -"
        peak = f"{r['peak_rss_mb'] / 1024:7.2f}GB"
        if "peak_cuda_mb" in r:
            peak += f" (GPU {r['peak_cuda_mb'] / 1024:.2f}GB)"
        print(
            f"{r['backend']:11s} {r['params_m']:7.1f}M {r['load_s']:7.2f} {r['batch1_s']:11.2f} "
            f"{r['best_s']:8.2f} b={r['best_batch']:<2d} {ratio} {peak} {r['batch_vs_single_max_diff']:9.1e}"
        )
    print("s/clip: wall seconds per clip (batch time / batch size); peak RSS: load + inference, per process.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", help="comma-separated names (default: all registered)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default=None, help="batch sizes to try (default 1,2,4; quick: 1,2)")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 30; quick: 5)")
    parser.add_argument("--quick", action="store_true", help="tiny models and short clips: checks the script runs")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per backend")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    add_child_arguments(parser)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5.0 if args.quick else 30.0)
    args.batches = sorted({int(b) for b in (args.batches or ("1,2" if args.quick else "1,2,4")).split(",")} | {1})

    if args.write:
        write_checkpoint(args.write[0], Path(args.write[1]), args.size)
        return 0
    if args.worker:
        print(json.dumps(measure(args.worker, args.weights, args)))
        return 0

    from backends import REGISTRY

    names = args.backends.split(",") if args.backends else list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(unknown)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    common = ["--threads", str(args.threads), "--seconds", str(args.seconds)]
    common += ["--batches", ",".join(map(str, args.batches))]
    common += ["--device", args.device] if args.device else []
    results = []
    for name in names:
        reason = _skip_reason(name, args)
        if reason:
            result = {"backend": name, "skipped": reason}
        else:
            print(f"... {name}", file=sys.stderr, flush=True)
            result = run_one(name, args, common)
        results.append(result)
        if args.json:  # after every backend, so a run cut short keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        if "batch1_s" in result:
            print(
                f"    {name}: {result['batch1_s']:.2f} s/clip at batch 1, "
                f"peak RSS {result['peak_rss_mb'] / 1024:.2f} GB",
                file=sys.stderr,
                flush=True,
            )
    print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
