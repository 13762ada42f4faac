"""MusiCNN speed and memory: our PyTorch port next to the original TensorFlow extractor.

Figures, all with `torch.set_num_threads(--threads)` (2 by default, the size of our machines):

- a plain float32 matrix product's GFLOP/s, measured in the same run, as the yardstick;
- network only: tracks per second for 30-s clips (10 patches each) for several tracks-per-call
  and patches-per-forward settings, and the GFLOP/s that achieves (2 x multiply-adds of every
  convolution and dense layer of the published architecture: about 2.8 GFLOP per 3-s patch; the
  port's merged temporal convolution executes about 0.3 GFLOP more, not counted);
- the split of one clip's time between decode, log-mel and network;
- tracks per second end to end, decode excluded (waveforms in memory) and included (decode the
  file, resample if needed, analyse), at the best setting;
- the original ``musicnn.extractor.extractor(file, 'MSD_musicnn', extract_features=True)`` on the
  same files, when ``--tf-python`` names a Python that has TensorFlow and the musicnn wheel (the
  extractor rebuilds its graph and restores the checkpoint on every call, which is most of its
  cost; that is how users call it). It runs in a long-lived subprocess and the two are timed
  alternately, clip by clip, so that both see the same load on a shared machine;
- with ``--index-tracks N``: resident memory while the real indexer analyses N distinct 30-s files
  into a store, sampled as it goes, to show it stays flat (streaming, nothing accumulates).

The clips are the real 30-s excerpts of the shared reference folder (16 kHz FLAC, the files the
original was run on), plus 44.1 kHz stereo FLAC copies of them to include resampling in the
decode cost. Without the reference folder, synthetic clips are used. Weights: the user cache,
``--weights FOLDER``, or ``--random`` (speed does not depend on the values).

    nice -n 10 python bench/bench_musicnn.py --tf-python /path/to/tf-venv/bin/python
    nice -n 10 python bench/bench_musicnn.py --index-tracks 1000
    python bench/bench_musicnn.py --device cuda --random --no-decode      # on a GPU machine
    python bench/bench_musicnn.py --quick                                  # checks the script

Setting up the TensorFlow side (separate venv; Python 3.11):
    python3.11 -m venv tf && tf/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" librosa==0.11.0 soundfile
    tf/bin/pip install --no-deps musicnn==0.1.0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

REFERENCE_CLIPS = (
    "wesnoth_traveling_minstrels",
    "wesnoth_battle_epic",
    "wesnoth_knalgan_theme",
    "nexuiz_neuronal_diving",
    "nexuiz_ninesix",
    "nexuiz_infight",
)


def network_flops_per_patch() -> float:
    """2 x multiply-adds of one 187-frame patch through every convolution and dense layer."""
    t = 187
    macs = t * 59 * 204 * 7 * 38  # timbral 7x38 over 59 frequency positions
    macs += t * 30 * 204 * 7 * 67  # timbral 7x67 over 30
    macs += t * 96 * 51 * (128 + 64 + 32)  # temporal, every mel band
    macs += t * 64 * 7 * 561 + 2 * t * 64 * 7 * 64  # mid-end
    macs += 1506 * 200 + 200 * 50
    return 2.0 * macs


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _median_time(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(device, repeats: int) -> float:
    import torch

    n = 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    return 2 * n**3 / _median_time(lambda: a @ b, repeats, sync) / 1e9


def reference_folder() -> Path | None:
    override = os.environ.get("MRS_TUI_REFERENCE_DIR")
    for base in ([Path(override)] if override else []) + [ROOT.parent / "shared" / "reference"]:
        for folder in (base / "musicnn", base):
            if (folder / "manifest.json").is_file():
                return folder
    return None


def prepare_clips(folder: Path, count: int, decode: bool) -> tuple[list[np.ndarray], list[Path], list[Path]]:
    """(16 kHz waveforms, 16 kHz files, 44.1 kHz stereo files) of `count` 30-s clips."""
    reference = reference_folder()
    waves, files16 = [], []
    if reference is not None and decode:
        import soundfile as sf

        for name in (REFERENCE_CLIPS * count)[:count]:
            path = reference / f"{name}.flac"
            files16.append(path)
            waves.append(sf.read(path, dtype="float32")[0])
    else:
        rng = np.random.default_rng(0)
        t = np.arange(480000) / 16000
        for i in range(count):
            tone = 0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
            waves.append((tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    files44 = []
    if decode:
        import soundfile as sf
        import soxr

        for i, wave in enumerate(waves):
            if not files16:
                path = folder / f"clip{i}_16k.flac"
                sf.write(path, wave, 16000)
                files16.append(path)
            stereo = soxr.resample(wave, 16000, 44100)
            path = folder / f"clip{i}_44k.flac"
            sf.write(path, np.stack([stereo, stereo[::-1] * 0.5], axis=1), 44100)
            files44.append(path)
    return waves, files16, files44


def load_backend(args):
    from backends.musicnn import MusicnnBackend
    from backends.testing import write_random_checkpoint

    backend = MusicnnBackend(device=args.device)
    if args.random:
        folder = Path(tempfile.mkdtemp(prefix="musicnn-random-"))
        write_random_checkpoint("musicnn", folder)
        return backend.load(folder), "random weights"
    return backend.load(args.weights), "real weights" if args.weights is None else f"weights from {args.weights}"


def sweep_network(backend, waves, batches, passes, repeats) -> list[dict]:
    import torch

    sync = torch.cuda.synchronize if backend.device_.type == "cuda" else lambda: None
    patches = backend.patches(waves)
    per_track = len(patches[0])
    rows = []
    flops = network_flops_per_patch()
    for tracks in batches:
        batch = np.concatenate(patches[:tracks])
        for per_pass in passes:
            backend.patches_per_pass = per_pass
            seconds = _median_time(lambda batch=batch: backend.run_patches(batch), repeats, sync)
            rows.append(
                {
                    "tracks_per_call": tracks,
                    "patches_per_pass": per_pass,
                    "seconds_per_track": seconds / tracks,
                    "tracks_per_second": tracks / seconds,
                    "gflops": flops * per_track * tracks / seconds / 1e9,
                }
            )
    return rows


def split_one_clip(backend, wave, path16: Path | None, path44: Path | None, repeats: int) -> dict:
    from mrs_tui.audio import decode_excerpt

    out = {}
    if path16 is not None:
        out["decode_16k_flac"] = _median_time(lambda: decode_excerpt(path16, 0.0, 30.0).at(16000), repeats)
    if path44 is not None:  # shown apart: the total below counts the 16 kHz file only
        out["(decode_44k_stereo_flac_and_resample)"] = _median_time(
            lambda: decode_excerpt(path44, 0.0, 30.0).at(16000), repeats
        )
    out["log_mel_and_patches"] = _median_time(lambda: backend.patches([wave]), repeats)
    (patches,) = backend.patches([wave])
    out["network"] = _median_time(lambda: backend.run_patches(patches), repeats)
    return out


def end_to_end(backend, waves, files, tracks_per_call: int, rounds: int) -> dict:
    from mrs_tui.audio import decode_excerpt

    def excluded():
        for first in range(0, len(waves), tracks_per_call):
            backend.analyze(waves[first : first + tracks_per_call])

    def included(paths):
        def run():
            for first in range(0, len(paths), tracks_per_call):
                chunk = paths[first : first + tracks_per_call]
                backend.analyze([decode_excerpt(p, 0.0, 30.0).at(16000) for p in chunk])

        return run

    result = {"decode_excluded": len(waves) / _median_time(excluded, rounds)}
    for label, paths in files.items():
        if paths:
            result[f"decode_included_{label}"] = len(paths) / _median_time(included(paths), rounds)
    return result


ORIGINAL_SERVER = r"""
import contextlib, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
threads = int(sys.argv[1])
session = tf.compat.v1.Session
config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
tf.compat.v1.Session = lambda *a, **k: session(*a, **{**k, "config": config})
import musicnn
from musicnn import models
from musicnn.extractor import batch_data, extractor

# A warm graph as well, for the network alone: the extractor rebuilds its graph on every call.
graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
    training = tf.compat.v1.placeholder(tf.bool)
    outputs = models.define_model(x, training, "MSD_musicnn", 50)
    warm = session(graph=graph, config=config)
    tf.compat.v1.train.Saver().restore(warm, os.path.join(os.path.dirname(musicnn.__file__), "MSD_musicnn", ""))
print("ready", flush=True)
for line in sys.stdin:
    command, path = line.strip().split(" ", 1)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # it prints progress
        if command == "network":
            batch, _ = batch_data(path, 187, 187)
            start = time.perf_counter()
            warm.run([outputs[0], outputs[-1]], feed_dict={x: batch, training: False})
        else:
            start = time.perf_counter()
            extractor(path, model="MSD_musicnn", extract_features=True)
        elapsed = time.perf_counter() - start
    print(elapsed, flush=True)
"""


def compare_with_original(python: str, backend, paths: list[Path], threads: int, rounds: int) -> dict:
    """Per clip, the original extractor and the port (decode included, one clip per call), alternated.

    Pairs taken back to back see the same load, which matters on a shared machine; the ratio
    reported is the median of the per-pair ratios.
    """
    from mrs_tui.audio import decode_excerpt

    def original(path: Path, command: str = "extractor") -> float:
        time.sleep(0.5)  # let the other side's worker threads stop spinning: 2 cores are shared
        server.stdin.write(f"{command} {path}\n")
        server.stdin.flush()
        return float(server.stdout.readline())

    def port(path: Path) -> float:
        time.sleep(0.5)
        start = time.perf_counter()
        backend.analyze([decode_excerpt(path, 0.0, 30.0).at(16000)])
        return time.perf_counter() - start

    def port_network(path: Path) -> float:
        (patches,) = backend.patches([decode_excerpt(path, 0.0, 30.0).at(16000)])
        time.sleep(0.5)
        start = time.perf_counter()
        backend.run_patches(patches)
        return time.perf_counter() - start

    # TensorFlow's warnings go to a file: they would fill a pipe nobody reads.
    with tempfile.TemporaryFile(mode="w+") as errors:
        server = subprocess.Popen(
            [python, "-c", ORIGINAL_SERVER, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            if server.stdout.readline().strip() != "ready":
                errors.seek(0)
                return {"error": (errors.read().strip().splitlines() or ["failed"])[-1][:300]}
            original(paths[0]), port(paths[0]), original(paths[0], "network")  # warm-up
            pairs = [(original(path), port(path)) for _ in range(rounds) for path in paths]
            network = [(original(path, "network"), port_network(path)) for _ in range(rounds) for path in paths]
        finally:
            server.stdin.close()
            server.wait(timeout=60)
    return {
        "pairs": len(pairs),
        "original_median_seconds_per_clip": statistics.median(p[0] for p in pairs),
        "port_median_seconds_per_clip": statistics.median(p[1] for p in pairs),
        "median_speedup": statistics.median(p[0] / p[1] for p in pairs),
        "network_only_original_median_seconds": statistics.median(p[0] for p in network),
        "network_only_port_median_seconds": statistics.median(p[1] for p in network),
    }


def index_memory(backend, waves: list[np.ndarray], count: int, folder: Path) -> dict:
    """RSS while the real indexer analyses `count` distinct 30-s files (decode included)."""
    import soundfile as sf

    from mrs_tui.indexing import Indexer
    from mrs_tui.library import scan
    from mrs_tui.store import Store

    music = folder / "library"
    music.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        base = waves[i % len(waves)]
        # Distinct content per file (the library keys tracks by content hash).
        wave = np.roll(base, int(rng.integers(1, len(base)))) * np.float32(0.5 + 0.5 * rng.random())
        sf.write(music / f"{i:05d}.flac", wave, 16000)
    store = Store.open(folder / "library.db")
    scan(store, music)
    samples: list[tuple[int, float]] = []
    step = max(1, count // 20)

    def progress(p) -> None:
        if p.done % step == 0 or p.done == p.total:
            samples.append((p.done, _rss_mb()))

    rss_before = _rss_mb()
    started = time.perf_counter()
    report = Indexer(store, [backend], batch_size=backend.batch_size).run(progress=progress)
    seconds = time.perf_counter() - started
    store.close()
    tail = [rss for done, rss in samples if done >= count // 10]
    return {
        "tracks": count,
        "embedded": report.embedded.get("musicnn", 0),
        "seconds": seconds,
        "tracks_per_second": count / seconds,
        "rss_before_mb": rss_before,
        "rss_samples_mb": samples,
        "rss_growth_after_first_10pct_mb": (max(tail) - tail[0]) if tail else None,
        "peak_rss_mb": _peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--weights", help="folder with MSD_musicnn.safetensors (default: the user cache)")
    parser.add_argument("--random", action="store_true", help="random weights (same speed)")
    parser.add_argument("--clips", type=int, default=6, help="30-s clips per measurement")
    parser.add_argument("--batches", default="1,4,8", help="tracks per call to try")
    parser.add_argument("--passes", default="2,10,40", help="patches per forward pass to try")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tf-python", help="a Python with tensorflow-cpu 2.15 and musicnn 0.1.0 installed")
    parser.add_argument("--index-tracks", type=int, default=0, help="also index this many files, sampling RSS")
    parser.add_argument("--no-decode", action="store_true", help="skip file decoding (no soundfile needed)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="tiny run that checks the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.batches, args.passes, args.repeats = 2, "1,2", "10", 1
        args.index_tracks = min(args.index_tracks, 4)

    import torch

    torch.set_num_threads(args.threads)
    backend, weights = load_backend(args)
    device = backend.device_
    batches = [int(b) for b in args.batches.split(",")]
    passes = [int(p) for p in args.passes.split(",")]
    results: dict = {
        "device": str(device),
        "threads": args.threads,
        "weights": weights,
        "torch": torch.__version__,
        "gflop_per_patch": network_flops_per_patch() / 1e9,
    }
    with tempfile.TemporaryDirectory(prefix="bench-musicnn-") as scratch:
        folder = Path(scratch)
        count = max(args.clips, max(batches))
        waves, files16, files44 = prepare_clips(folder, count, decode=not args.no_decode)
        results["matmul_gflops"] = matmul_gflops(device, args.repeats)
        sweep = sweep_network(backend, waves, batches, passes, args.repeats)
        results["network_sweep"] = sweep
        best = max(sweep, key=lambda row: row["tracks_per_second"])
        results["best"] = best
        backend.patches_per_pass = best["patches_per_pass"]
        results["split_one_clip"] = split_one_clip(
            backend, waves[0], files16[0] if files16 else None, files44[0] if files44 else None, args.repeats
        )
        results["tracks_per_second"] = end_to_end(
            backend,
            waves[: args.clips],
            {"16k_flac": files16[: args.clips], "44k_stereo_flac": files44[: args.clips]},
            best["tracks_per_call"],
            max(1, args.repeats // 2),
        )
        if args.tf_python and files16:
            results["original_tensorflow"] = compare_with_original(
                args.tf_python, backend, files16[: args.clips], args.threads, max(1, args.repeats)
            )
        results["matmul_gflops_after"] = matmul_gflops(device, args.repeats)
        if args.index_tracks:
            results["index_memory"] = index_memory(backend, waves[: args.clips], args.index_tracks, folder)
    print_report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_report(r: dict) -> None:
    print(f"MusiCNN port on {r['device']}, {r['threads']} threads, torch {r['torch']}, {r['weights']}")
    print(
        f"plain float32 matmul: {r['matmul_gflops']:.0f} GFLOP/s before, {r['matmul_gflops_after']:.0f} after "
        f"(a drop means the machine got busier)"
    )
    print(f"network: {r['gflop_per_patch']:.2f} GFLOP per 3-s patch, 10 patches per 30-s clip")
    print(f"{'tracks/call':>11s} {'patches/pass':>12s} {'s/track':>8s} {'tracks/s':>9s} {'GFLOP/s':>8s}")
    for row in r["network_sweep"]:
        print(
            f"{row['tracks_per_call']:11d} {row['patches_per_pass']:12d} {row['seconds_per_track']:8.3f} "
            f"{row['tracks_per_second']:9.2f} {row['gflops']:8.1f}"
        )
    best = r["best"]
    print(
        f"best: {best['tracks_per_call']} tracks/call, {best['patches_per_pass']} patches/pass: "
        f"{best['gflops']:.0f} GFLOP/s = {100 * best['gflops'] / r['matmul_gflops']:.0f}% of the matmul figure"
    )
    split = r["split_one_clip"]
    total = sum(v for k, v in split.items() if not k.startswith("("))
    print("one 30-s clip: " + ", ".join(f"{k} {v * 1000:.0f} ms ({100 * v / total:.0f}%)" for k, v in split.items()))
    tps = r["tracks_per_second"]
    print("tracks per second: " + ", ".join(f"{k} {v:.2f}" for k, v in tps.items()))
    original = r.get("original_tensorflow")
    if original:
        if "error" in original:
            print(f"original TensorFlow extractor: failed ({original['error']})")
        else:
            print(
                f"original TensorFlow extractor vs port, one 30-s clip per call, decode included, "
                f"{original['pairs']} alternated pairs: {original['original_median_seconds_per_clip']:.2f} s vs "
                f"{original['port_median_seconds_per_clip']:.2f} s per clip, median speed-up "
                f"{original['median_speedup']:.1f}x"
            )
            print(
                f"network alone on a 30-s clip (10 patches, warm): TensorFlow "
                f"{original['network_only_original_median_seconds']:.2f} s, port "
                f"{original['network_only_port_median_seconds']:.2f} s"
            )
    memory = r.get("index_memory")
    if memory:
        samples = ", ".join(f"{done}: {rss:.0f}" for done, rss in memory["rss_samples_mb"])
        print(
            f"indexing {memory['tracks']} files: {memory['tracks_per_second']:.2f} tracks/s; RSS MiB by tracks done "
            f"[{samples}]; growth after the first 10%: {memory['rss_growth_after_first_10pct_mb']:.0f} MiB; "
            f"peak {memory['peak_rss_mb']:.0f} MiB"
        )


if __name__ == "__main__":
    raise SystemExit(main())
