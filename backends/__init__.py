"""Registry of audio-embedding backends.

Listing backends imports none of them: every entry is a `BackendSpec` holding the facts a
user needs (rate, clip, dimension, licence, where the weights come from) and the
"module:Class" to import when the backend is actually used.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from backends.base import (
    MAX_TRACK_SECONDS,
    RUNTIME_OPTIONS,
    Analysis,
    Backend,
    BackendError,
    BackendSpec,
    WeightsMissing,
)
from mrs_tui.errors import UserError

__all__ = [
    "MAX_TRACK_SECONDS",
    "REGISTRY",
    "Analysis",
    "Backend",
    "BackendError",
    "BackendSpec",
    "BackendStatus",
    "WeightsMissing",
    "backend_status",
    "default_backend_name",
    "embedding_version",
    "get_spec",
    "list_specs",
    "load_backend",
    "weights_dir",
]

_NC = "CC-BY-NC-4.0 (non-commercial)"

_SPECS = [
    BackendSpec(
        name="mfcc",
        display_name="MFCC + spectral statistics",
        target="backends.mfcc:MfccBackend",
        sample_rate=22050,
        clip_seconds=30.0,
        dim=90,
        version="1",
        description="Handcrafted librosa features (MFCC, chroma, spectral shape): the paper's baseline.",
        cpu_seconds_per_track=0.12,
    ),
    BackendSpec(
        name="musicnn",
        display_name="MusiCNN (MSD)",
        target="backends.musicnn:MusicnnBackend",
        sample_rate=16000,
        clip_seconds=30.0,
        dim=200,
        version="msd-1",
        description="Pons & Serra's MusiCNN, PyTorch port of the real MSD/MTT weights; penultimate layer, mean over 3-s patches.",
        weights_license="ISC (musicnn 0.1.0)",
        code_license="MIT (mrs-tui port)",
        source="PyPI wheel musicnn==0.1.0",
        weights_files=("MSD_musicnn.safetensors",),
        fetch_hint="mrs-tui backends fetch musicnn",
        cpu_seconds_per_track=0.3,
        options=("model", "paper_compat"),
    ),
    BackendSpec(
        name="music2vec",
        display_name="Music2Vec v1",
        target="backends.music2vec:Music2VecBackend",
        sample_rate=16000,
        clip_seconds=30.0,
        dim=768,
        version="1",
        description="data2vec-style self-supervised model (transformers Data2VecAudioModel); last hidden state, mean over time.",
        weights_license=_NC,
        code_license="Apache-2.0 (transformers)",
        source="huggingface.co/m-a-p/music2vec-v1",
        weights_files=("config.json", "model.safetensors|pytorch_model.bin"),
        fetch_hint="mrs-tui backends fetch music2vec",
        cpu_seconds_per_track=4.4,
        options=("precision", "paper_compat"),
        option_defaults={"precision": "fp32"},
    ),
    BackendSpec(
        name="mert",
        display_name="MERT v1 330M",
        target="backends.mert:MertBackend",
        sample_rate=24000,
        clip_seconds=30.0,
        dim=1024,
        version="v1-1",
        description="MERT acoustic music model run as transformers HubertModel (no remote code); last hidden state, mean.",
        weights_license="MIT per model card (CC-BY-NC-4.0 elsewhere: check)",
        code_license="Apache-2.0 (transformers)",
        source="huggingface.co/m-a-p/MERT-v1-330M (variant=95m: m-a-p/MERT-v1-95M)",
        weights_files=("config.json", "model.safetensors|pytorch_model.bin"),
        fetch_hint="mrs-tui backends fetch mert",
        cpu_seconds_per_track=14.0,
        options=("variant", "precision", "paper_compat"),
        option_defaults={"variant": "330m", "precision": "fp32"},
    ),
    BackendSpec(
        name="musicfm",
        display_name="MusicFM (MSD)",
        target="backends.musicfm:MusicFMBackend",
        sample_rate=24000,
        clip_seconds=30.0,
        dim=1024,
        version="msd-1",
        description="Mel front end + 12-layer conformer (Won et al.); layer 12, mean over time.",
        weights_license="not stated upstream (treat as research use)",
        code_license="MIT (mrs-tui wrapper)",
        source="huggingface.co/minzwon/MusicFM (pretrained_msd.pt, msd_stats.json)",
        weights_files=("pretrained_msd.pt|pretrained_msd.safetensors", "msd_stats.json"),
        fetch_hint="mrs-tui backends fetch musicfm",
        cpu_seconds_per_track=7.9,
        options=("precision", "paper_compat"),
        option_defaults={"precision": "fp32"},
    ),
    BackendSpec(
        name="muq",
        display_name="MuQ large (MSD iter)",
        target="backends.muq:MuQBackend",
        sample_rate=24000,
        clip_seconds=30.0,
        dim=1024,
        version="large-msd-iter-1",
        description="MuQ self-supervised conformer (own wrapper); last hidden state, mean over time.",
        weights_license=_NC,
        code_license="MIT (mrs-tui wrapper)",
        source="huggingface.co/OpenMuQ/MuQ-large-msd-iter",
        weights_files=("config.json", "model.safetensors"),
        fetch_hint="mrs-tui backends fetch muq",
        cpu_seconds_per_track=7.9,
        options=("precision", "paper_compat"),
        option_defaults={"precision": "fp32"},
    ),
    BackendSpec(
        name="muq_mulan",
        display_name="MuQ-MuLan large",
        target="backends.muq_mulan:MuQMuLanBackend",
        sample_rate=24000,
        clip_seconds=30.0,
        dim=512,
        version="large-1",
        description="Audio tower of the MuQ-MuLan joint music-text model; normalised latent, mean over 10-s clips.",
        weights_license=_NC,
        code_license="MIT (mrs-tui wrapper)",
        source="huggingface.co/OpenMuQ/MuQ-MuLan-large (+ config.json of OpenMuQ/MuQ-large-msd-iter as muq_config.json)",
        weights_files=("config.json", "model.safetensors", "muq_config.json"),
        fetch_hint="mrs-tui backends fetch muq_mulan",
        cpu_seconds_per_track=8.6,
        options=("paper_compat",),
    ),
    BackendSpec(
        name="encodecmae",
        display_name="EncodecMAE base",
        target="backends.encodecmae:EncodecMAEBackend",
        sample_rate=24000,
        clip_seconds=30.0,
        dim=768,
        version="base-1",
        description="Masked autoencoder over EnCodec latents (own re-implementation); last layer, mean over 4-s chunks.",
        weights_license="not stated; contains EnCodec weights (CC-BY-NC-4.0)",
        code_license="MIT (mrs-tui re-implementation)",
        source="huggingface.co/lpepino/encodecmae-base (model.pt)",
        weights_files=("model.pt|model.safetensors",),
        fetch_hint="mrs-tui backends fetch encodecmae",
        cpu_seconds_per_track=4.4,
    ),
    BackendSpec(
        name="mule",
        display_name="MULE (SF-NFNet-F0)",
        target="backends.mule:MuleBackend",
        sample_rate=16000,
        clip_seconds=30.0,
        dim=1728,
        version="1",
        description="Pandora's MULE contrastive model (own torch port); 3-s slices every 2 s, timeline average.",
        weights_license=_NC,
        code_license="MIT (mrs-tui port; upstream code GPL-3.0)",
        source="huggingface.co/matteospanio/mule (PandoraMedia model.keras converted to safetensors)",
        weights_files=("config.json", "model.safetensors"),
        fetch_hint="mrs-tui backends fetch mule",
        cpu_seconds_per_track=1.2,
    ),
    BackendSpec(
        name="jukebox",
        display_name="Jukebox 5B (layer 36)",
        target="backends.jukebox:JukeboxBackend",
        sample_rate=44100,
        clip_seconds=24.0,
        dim=4800,
        version="5b-l36-1",
        description="OpenAI Jukebox 5B prior, block 36 of 72 (JukeMIR recipe); mean over time. Needs a >=13 GB GPU.",
        weights_license="OpenAI Noncommercial Use License",
        code_license="MIT (mrs-tui wrapper)",
        source="openaipublic.azureedge.net/jukebox/models/5b (vqvae.pth.tar, prior_level_2.pth.tar)",
        weights_files=("vqvae.safetensors|vqvae.pth.tar", "prior_level_2.safetensors|prior_level_2.pth.tar"),
        fetch_hint="mrs-tui backends fetch jukebox",
        needs_gpu=True,
        cpu_seconds_per_track=None,
        options=("allow_cpu",),
    ),
]

REGISTRY: dict[str, BackendSpec] = {spec.name: spec for spec in _SPECS}


def list_specs() -> list[BackendSpec]:
    return list(REGISTRY.values())


def get_spec(name: str) -> BackendSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown backend {name!r}",
            f"choose one of: {', '.join(REGISTRY)} (see `mrs-tui backends`)",
        ) from None


def weights_dir(name: str) -> Path:
    from mrs_tui.paths import cache_dir

    return cache_dir() / "weights" / name


def _has_files(folder: Path, required: tuple[str, ...], *, check_format: bool = False) -> bool:
    present = _looks_complete if check_format else Path.is_file
    return all(any(present(folder / alt) for alt in group.split("|")) for group in required)


def _looks_complete(path: Path) -> bool:
    """The file exists and its first bytes are of the format its name promises (not just the name)."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except OSError:
        return False
    if path.suffix == ".safetensors":  # 8-byte little-endian header length, then a JSON object
        return len(head) >= 9 and 0 < int.from_bytes(head[:8], "little") < size and head[8:9] == b"{"
    if path.suffix in (".bin", ".pt", ".pth", ".ckpt") or path.name.endswith(".pth.tar"):
        return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"  # torch zip, or a legacy pickle
    return size > 0


WEIGHTS_MISSING = "weights missing"  # a backend state: `fetch_weights` (the app asks first) makes it ready


def gpu_visible() -> bool:
    """Is a CUDA GPU usable here? The NVIDIA driver's device nodes answer without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()


@dataclass(frozen=True)
class BackendStatus:
    state: str  # "ready", "weights missing", "needs a GPU"
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "ready"


def backend_status(name: str) -> BackendStatus:
    spec = get_spec(name)
    if spec.needs_gpu and not gpu_visible():
        return BackendStatus("needs a GPU", "no CUDA GPU is visible on this machine")
    if spec.needs_weights and not _has_files(weights_dir(name), spec.weights_files, check_format=True):
        return BackendStatus(WEIGHTS_MISSING, f"run: {spec.fetch_hint}")
    return BackendStatus("ready")


def default_backend_name(preferred: str = "") -> str:
    """The user's choice if set, else MusiCNN when its weights are present, else MFCC."""
    if preferred:
        get_spec(preferred)
        return preferred
    return "musicnn" if backend_status("musicnn").ready else "mfcc"


def embedding_version(name: str, **options: object) -> str:
    """The version stored vectors are keyed by; any option that changes the vectors is in it."""
    spec = get_spec(name)
    allowed = set(spec.options) | RUNTIME_OPTIONS
    unknown = sorted(k for k, v in options.items() if k not in allowed and not (k == "paper_compat" and not v))
    if unknown:
        raise BackendError(
            f"backend {name!r} has no option {', '.join(unknown)}",
            f"options it accepts: {', '.join(spec.options) or 'none'}",
        )
    version = spec.version
    for key in sorted(options):
        value = options[key]
        if key == "paper_compat" or key in RUNTIME_OPTIONS or value is None or spec.option_defaults.get(key) == value:
            continue
        version += f"+{key}={value}"
    if options.get("paper_compat"):
        version += "+paper"
    return version


def backend_class(name: str) -> type[Backend]:
    """Import one backend's module and return its class."""
    module_name, _, class_name = get_spec(name).target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_backend(name: str, weights: str | Path | None = None, **options: object) -> Backend:
    """Import, construct and load one backend."""
    backend = backend_class(name)(**options)
    backend.load(weights)
    return backend


def fetch_weights(name: str, **kwargs: object) -> Path | None:
    """Download (or install from ``source=``) one backend's weights; None for a backend without any."""
    if not get_spec(name).needs_weights:
        return None
    return backend_class(name).fetch(**kwargs)
