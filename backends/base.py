"""The backend protocol: audio in, one vector per track out.

A backend is described by a `BackendSpec` (static facts, listed without importing anything)
and implemented by a `Backend` subclass in its own module. The core decodes and resamples
each file once, cuts the excerpt the spec asks for, and hands every backend a batch of mono
float32 waveforms at its `sample_rate`; `embed` does no I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from mrs_tui.errors import UserError


@dataclass(frozen=True)
class BackendSpec:
    """What the registry knows about a backend without importing it."""

    name: str
    display_name: str
    target: str  # "module:Class"
    sample_rate: int
    clip_seconds: float | None  # None: the whole track (capped by MAX_TRACK_SECONDS)
    dim: int
    version: str
    description: str
    weights_license: str = "none (no weights)"
    code_license: str = "MIT (mrs-tui)"
    source: str = ""  # where the weights come from upstream
    weights_files: tuple[str, ...] = ()  # files that must be in the weights folder
    fetch_hint: str = ""  # the exact command that gets the weights
    needs_gpu: bool = False
    cpu_seconds_per_track: float | None = None  # 30-s clip, 2 CPU threads, measured in bench/
    options: tuple[str, ...] = ()  # accepted keyword options, e.g. ("paper_compat",)
    option_defaults: dict = field(default_factory=dict)  # an option at its default is left out of the version
    extras: dict = field(default_factory=dict)

    @property
    def needs_weights(self) -> bool:
        return bool(self.weights_files)


# Options that say how or where a model runs, never what it computes: not part of the version.
RUNTIME_OPTIONS = frozenset({"device", "allow_cpu", "allow_pickle"})

# Whole-track backends still need a bound: a 3-hour DJ mix must not exhaust memory.
MAX_TRACK_SECONDS = 600.0


@dataclass
class Analysis:
    """One track's result: the track vector, optional per-frame vectors and extras (tags...)."""

    vector: np.ndarray
    frames: np.ndarray | None = None
    extras: dict | None = None


class BackendError(UserError):
    """Loading or running a backend failed in a way the user can act on."""


class WeightsMissing(BackendError):
    pass


class Backend(ABC):
    """Base class of every backend. Subclasses set `spec` and implement `load` and `embed`."""

    spec: ClassVar[BackendSpec]
    # Largest batch worth queuing; slow models use small batches so results are committed
    # (and indexing can resume) often. None: the indexer's setting.
    batch_size: ClassVar[int | None] = None
    # Where `fetch` downloads from when the user gives no folder (a Hugging Face repository).
    hub_repo: ClassVar[str | None] = None
    hub_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, paper_compat: bool = False, device: str | None = None, **options: object):
        unknown = set(options) - set(self.spec.options)
        if unknown:
            raise BackendError(
                f"backend {self.spec.name!r} has no option {', '.join(sorted(unknown))}",
                f"options it accepts: {', '.join(self.spec.options) or 'none'}",
            )
        if paper_compat and "paper_compat" not in self.spec.options:
            raise BackendError(
                f"backend {self.spec.name!r} has no paper-compatibility mode",
                "drop --paper-compat for this backend",
            )
        self.paper_compat = paper_compat
        self.device = device
        self.options = options
        self.loaded = False

    # Static facts, readable on instances too.
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def clip_seconds(self) -> float | None:
        return self.spec.clip_seconds

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def version(self) -> str:
        """Embedding version: changes whenever stored vectors would change."""
        from backends import embedding_version

        return embedding_version(self.name, paper_compat=self.paper_compat, **self.options)

    @classmethod
    def fetch(
        cls,
        *,
        source: str | Path | None = None,
        allow_pickle: bool = False,
        revision: str | None = None,
        **options: object,
    ) -> Path:
        """Put the weights in the user cache, from `source` or from upstream; returns the folder.

        The steps are hooks a backend overrides: `install_from` (the user's folder or file),
        `download` (upstream: `hub_repo` by default) and `after_fetch` (conversion of what
        either left, e.g. a torch pickle to safetensors). `options` are backend options that
        choose what to download (MERT's ``variant``).
        """
        unknown = set(options) - set(cls.spec.options)
        if unknown:
            raise BackendError(
                f"backend {cls.spec.name!r} has no option {', '.join(sorted(unknown))}",
                f"options it accepts: {', '.join(cls.spec.options) or 'none'}",
            )
        if source is not None:
            folder = cls.install_from(source, allow_pickle=allow_pickle)
        else:
            folder = cls.download(revision=revision, allow_pickle=allow_pickle, **options)
        return cls.after_fetch(folder, allow_pickle=allow_pickle)

    @classmethod
    def install_from(cls, source: str | Path, *, allow_pickle: bool) -> Path:
        """Copy a folder (or the folder of a file) the user downloaded into the user cache."""
        from backends._weights import install_from_folder

        return install_from_folder(cls.spec, Path(source))

    @classmethod
    def download(cls, *, revision: str | None, allow_pickle: bool, **options: object) -> Path:
        """Download the weights from upstream into the user cache."""
        from backends._weights import fetch_from_hub

        if cls.hub_repo is None:
            raise WeightsMissing(
                f"mrs-tui cannot download the {cls.spec.name} weights by itself ({cls.spec.source})",
                f"download them and run: mrs-tui backends fetch {cls.spec.name} --from FOLDER",
            )
        return fetch_from_hub(cls.spec, cls.hub_repo, cls.hub_files, revision=revision)

    @classmethod
    def after_fetch(cls, folder: Path, *, allow_pickle: bool) -> Path:
        """Convert what `install_from` or `download` left in `folder`; returns the folder."""
        return folder

    @abstractmethod
    def load(self, weights: str | Path | None = None) -> Backend:
        """Load weights from a folder/file, the user cache, or (where allowed) the hub."""

    @abstractmethod
    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 track vectors for N mono waveforms at `sample_rate`."""

    def analyze(self, waveforms: Sequence[np.ndarray]) -> list[Analysis]:
        """Vectors plus anything else worth keeping; backends with tags or frames override."""
        vectors = self.embed(waveforms)
        return [Analysis(vector=v) for v in vectors]

    def _require_loaded(self) -> None:
        if not self.loaded:
            raise BackendError(f"backend {self.name!r} is not loaded", "call load() first")


class MeanPooledBackend(Backend):
    """A backend whose track vector is the mean of per-frame vectors (most of the paper's models).

    Subclasses implement `frame_sets`: one (frames, dim) float32 CPU tensor per waveform.
    """

    def frame_sets(self, waveforms: Sequence[np.ndarray]) -> list:
        raise NotImplementedError

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        if not len(waveforms):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([f.mean(dim=0).numpy() for f in self.frame_sets(waveforms)]).astype(np.float32)

    def analyze_frames(self, waveforms: Sequence[np.ndarray]) -> list[Analysis]:
        return [
            Analysis(vector=f.mean(dim=0).numpy().astype(np.float32), frames=f.numpy().astype(np.float32))
            for f in self.frame_sets(waveforms)
        ]
