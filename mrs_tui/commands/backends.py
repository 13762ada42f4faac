"""`mrs-tui backends` (list, fetch) and `mrs-tui embed`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mrs_tui.cli import emit, load_settings
from mrs_tui.errors import UserError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backends", parents=[common], help="list backends, or fetch weights")
    p.add_argument("action", nargs="?", default="list", choices=["list", "fetch"])
    p.add_argument("name", nargs="?")
    p.add_argument("--from", dest="source", metavar="FOLDER", help="take weights from a local folder or file")
    p.add_argument("--revision", help="hub revision (commit, tag) to download")
    p.add_argument("--allow-pickle", action="store_true", help="allow checkpoints that need full unpickling")
    p.set_defaults(run=run_backends)

    p = sub.add_parser("embed", parents=[common], help="print the embedding of audio files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--backend")
    p.add_argument("--weights", metavar="PATH", help="weights folder (default: the user cache)")
    p.add_argument("--frames", action="store_true", help="also print per-frame vectors (and MusiCNN's taggram)")
    p.add_argument("--paper-compat", action="store_true")
    p.set_defaults(run=run_embed)


def run_backends(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        return _backends_fetch(args)
    from backends import backend_status, default_backend_name, list_specs

    default = default_backend_name()
    cores = os.cpu_count() or 2
    rows = []
    for spec in list_specs():
        status = backend_status(spec.name)
        seconds = None
        if spec.cpu_seconds_per_track is not None:
            # Figures were measured on 2 cores; more cores help roughly linearly up to ~8.
            seconds = round(spec.cpu_seconds_per_track * 2 / min(max(cores, 1), 8), 2)
        rows.append(
            {
                "name": spec.name,
                "display_name": spec.display_name,
                "status": status.state,
                "detail": status.detail,
                "default": spec.name == default,
                "dim": spec.dim,
                "sample_rate": spec.sample_rate,
                "clip_seconds": spec.clip_seconds,
                "version": spec.version,
                "weights_license": spec.weights_license,
                "code_license": spec.code_license,
                "source": spec.source,
                "seconds_per_track_cpu": seconds,
                "needs_gpu": spec.needs_gpu,
                "description": spec.description,
            }
        )

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
        lines.append("* default backend.  s/track: expected seconds per 30-s clip on this CPU.")
        return "\n".join(lines)

    emit(args, rows, text)
    return 0


def _backends_fetch(args: argparse.Namespace) -> int:
    import importlib

    from backends import get_spec

    if not args.name:
        raise UserError("which backend?", "usage: mrs-tui backends fetch NAME [--from FOLDER]")
    spec = get_spec(args.name)
    if not spec.needs_weights:
        emit(args, {"name": spec.name, "path": None}, f"{spec.name} needs no weights")
        return 0
    module_name, _, class_name = spec.target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    path = cls.fetch(source=args.source, allow_pickle=args.allow_pickle, revision=args.revision)
    emit(args, {"name": spec.name, "path": str(path)}, f"{spec.name}: weights ready in {path}")
    return 0


def run_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from backends import load_backend
    from mrs_tui.audio import decode_excerpt, excerpt_window, probe
    from mrs_tui.config import Settings

    settings = load_settings(args)
    from backends import default_backend_name

    name = default_backend_name(args.backend or settings.backend)
    options = {"paper_compat": True} if args.paper_compat else {}
    backend = load_backend(name, args.weights, **options)
    results = []
    for file in args.files:
        path = Path(file).expanduser()
        if not path.exists():
            raise UserError(f"{path} does not exist", "check the file name")
        info = probe(path)
        clip = backend.clip_seconds
        start, seconds = excerpt_window(info.duration, clip, settings.clip_position or Settings().clip_position)
        audio = decode_excerpt(path, start, seconds)
        wave = audio.at(backend.sample_rate)
        (analysis,) = (
            backend.analyze_frames if args.frames and hasattr(backend, "analyze_frames") else backend.analyze
        )([wave])
        entry = {
            "file": str(path),
            "backend": name,
            "version": backend.version,
            "dim": int(analysis.vector.shape[-1]),
            "excerpt": {"start": start, "seconds": len(wave) / backend.sample_rate},
            "embedding": [float(x) for x in np.asarray(analysis.vector, np.float32)],
        }
        if args.frames and analysis.frames is not None:
            entry["frames"] = np.asarray(analysis.frames, np.float32).tolist()
        if analysis.extras:
            entry.update(analysis.extras if args.frames else {k: v for k, v in analysis.extras.items() if k == "tags"})
        results.append(entry)

    def text() -> str:
        lines = []
        for r in results:
            vec = np.array(r["embedding"])
            head = " ".join(f"{x:+.4f}" for x in vec[:8])
            lines.append(
                f"{r['file']}: {r['backend']} {r['version']} dim {r['dim']}  [{head} ...]  |v|={np.linalg.norm(vec):.4f}"
            )
            if r.get("tags"):
                lines.append("  tags: " + ", ".join(f"{t} {p:.2f}" for t, p in r["tags"][:5]))
            if "frames" in r:
                lines.append(f"  frames: {len(r['frames'])} x {len(r['frames'][0]) if r['frames'] else 0}")
        return "\n".join(lines)

    emit(args, results, text)
    return 0
