"""The recommender protocol: a small `fit` / `recommend` surface over plain arrays.

Items are internal integer indices 0..n_items-1 — the rows of the item (audio) vector
matrix, which covers the whole catalogue, hot and cold. Contexts are listening sessions in
the app and users in research logs; both are internal indices 0..n_contexts-1. The engine
maps track and session ids to these indices at the edge.

A track is *hot* for a fitted recommender when it occurs in its training interactions and
*cold* otherwise; `hot_mask` records which. Every recommender scores cold items through
its audio path where it can (`scores_cold_items`), including items appended to the
catalogue after training (`extend_items`): the app's library grows between trainings.

Every recommender follows one template (as implicit and RecTools do): it declares its
hyper-parameters once, as a frozen dataclass (`Params`), and the base class refuses any
parameter it does not name; the base `fit` does what every model needs — the cancel check,
the catalogue facts (size, hot items), the model's own training set-up (threads, seed,
device: `_fitting`) — calls the model's `_fit`, and then checks that what was learned is
finite. Hot/cold routing of a query (`route`) is decided here from capability flags
(`recommends_for_hot`, `recommends_for_cold`), not by each caller.

A fitted model is a folder: ``params.json`` (name, seed, constructor parameters),
``state.npz`` (plain arrays: hot mask, vectors, per-context items) and, for models with
learned weights, ``model.safetensors`` written through `safetensors.numpy` — so saving and
loading never imports torch and never unpickles anything.
"""

from __future__ import annotations

import json
import threading
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from mrs_tui.errors import UserError

Pool = Literal["all", "hot", "cold"]
Mode = Literal["hot", "cold"]
WEIGHTS_FILE = "model.safetensors"
ProgressCallback = Callable[[float, float, str], None]  # (done, total, message)


class Cancelled(Exception):
    """Raised inside `fit` when the caller's cancel event is set."""


class InvalidParameter(UserError, ValueError):
    """A recommender parameter that does not exist or has a value it cannot take."""


class NonFiniteModel(UserError, ValueError):
    """Training produced NaN or infinite values (as implicit refuses NaN factors after a fit)."""


@dataclass(frozen=True)
class Params:
    """Hyper-parameters of a recommender, declared once as dataclass fields.

    Subclasses add fields (with defaults) and may override `check` for constraints between
    them. `build` is how every recommender receives its options: unknown names are refused
    with the list of allowed ones, and values are converted to the declared type (so options
    from JSON, a config file or the command line all arrive as the same types).
    """

    # The published code's behaviour where it differs from the paper's text (each recommender's
    # `paper_params` and module docstring list what that changes); False: the text, or what measures better.
    paper_compat: bool = False

    @classmethod
    def build(cls, recommender: str, options: Mapping[str, object]) -> Params:
        allowed = [f.name for f in fields(cls)]
        for name in options:
            if name not in allowed:
                raise InvalidParameter(
                    f"unknown parameter {name!r} for the {recommender} recommender",
                    f"allowed: {', '.join(allowed)}" if allowed else "it takes no parameters",
                )
        hints = typing.get_type_hints(cls)
        values = {name: _convert(recommender, name, value, hints[name]) for name, value in options.items()}
        params = cls(**values)
        params.check(recommender)
        return params

    def check(self, recommender: str) -> None:
        """Raise `InvalidParameter` for values that are wrong together (none by default)."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _convert(recommender: str, name: str, value: object, annotation: object) -> object:
    """`value` as the field's declared type: bool, int, float, str or one of them | None."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
    else:
        for kind in (k for k in options if k is not type(None)):
            converted = _as(kind, value)
            if converted is not _NOT_CONVERTIBLE:
                return converted
    names = " or ".join("None" if k is type(None) else getattr(k, "__name__", str(k)) for k in options)
    raise InvalidParameter(
        f"parameter {name}={value!r} of the {recommender} recommender must be {names}",
        f"give {name} a value of that type",
    )


_NOT_CONVERTIBLE = object()
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _as(kind: object, value: object) -> object:
    if kind is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, int | np.integer) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        return _NOT_CONVERTIBLE
    if kind is int:
        if isinstance(value, bool):
            return _NOT_CONVERTIBLE
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return _NOT_CONVERTIBLE
        return _NOT_CONVERTIBLE
    if kind is float:
        if isinstance(value, bool):
            return _NOT_CONVERTIBLE
        try:
            return float(value) if isinstance(value, int | float | np.number | str) else _NOT_CONVERTIBLE
        except ValueError:
            return _NOT_CONVERTIBLE
    if kind is str:
        return value if isinstance(value, str) else _NOT_CONVERTIBLE
    return value


@dataclass
class Interactions:
    """(context, item, time, weight) rows; the unit every recommender trains on.

    The rows are the positive interactions (played, completed, liked). `negative_contexts` /
    `negative_items` are the (context, item) pairs the listener turned down there (skipped or
    disliked, as last verdict): they never make an item hot, and learned models with
    ``learn_from_skips`` use them as negatives. Research logs have none.
    """

    contexts: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    n_contexts: int
    n_items: int
    weights: np.ndarray | None = None
    negative_contexts: np.ndarray | None = None
    negative_items: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.contexts = np.asarray(self.contexts, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if self.weights is None:
            self.weights = np.ones(len(self.items), dtype=np.float32)
        else:
            self.weights = np.asarray(self.weights, dtype=np.float32)
        n = len(self.items)
        if not (len(self.contexts) == len(self.timestamps) == len(self.weights) == n):
            raise ValueError("contexts, items, timestamps and weights must have the same length")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError("item index out of range")
        if n and (self.contexts.min() < 0 or self.contexts.max() >= self.n_contexts):
            raise ValueError("context index out of range")
        empty = np.zeros(0, np.int64)
        self.negative_contexts = np.asarray(
            empty if self.negative_contexts is None else self.negative_contexts, dtype=np.int64
        )
        self.negative_items = np.asarray(empty if self.negative_items is None else self.negative_items, dtype=np.int64)
        m = len(self.negative_items)
        if len(self.negative_contexts) != m:
            raise ValueError("negative_contexts and negative_items must have the same length")
        if m and (self.negative_items.min() < 0 or self.negative_items.max() >= self.n_items):
            raise ValueError("negative item index out of range")
        if m and (self.negative_contexts.min() < 0 or self.negative_contexts.max() >= self.n_contexts):
            raise ValueError("negative context index out of range")

    @property
    def has_negatives(self) -> bool:
        return len(self.negative_items) > 0

    def negative_matrix(self):
        """contexts x items binary CSR of the turned-down pairs, minus any pair that is also positive."""
        from scipy.sparse import csr_matrix

        shape = (self.n_contexts, self.n_items)
        ones = np.ones(len(self.negative_items), np.float32)
        m = csr_matrix((ones, (self.negative_contexts, self.negative_items)), shape=shape)
        m.sum_duplicates()
        m.data[:] = 1.0
        if len(self):
            m = m - m.multiply(self.matrix(binary=True))
            m.eliminate_zeros()
        return m.tocsr()

    def __len__(self) -> int:
        return len(self.items)

    def matrix(self, *, binary: bool = True):
        """contexts x items CSR matrix (scipy)."""
        from scipy.sparse import csr_matrix

        data = np.ones(len(self), np.float32) if binary else self.weights
        m = csr_matrix((data, (self.contexts, self.items)), shape=(self.n_contexts, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def sequences(self) -> list[np.ndarray]:
        """Per context, its items ordered by time (ties by row order)."""
        order = np.lexsort((np.arange(len(self)), self.timestamps, self.contexts))
        ctx = self.contexts[order]
        items = self.items[order]
        bounds = np.searchsorted(ctx, np.arange(self.n_contexts + 1))
        return [items[bounds[c] : bounds[c + 1]] for c in range(self.n_contexts)]

    def hot_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_items, dtype=bool)
        mask[self.items] = True
        return mask

    def item_counts(self) -> np.ndarray:
        """Number of distinct contexts per item."""
        return np.asarray(self.matrix(binary=True).sum(axis=0)).ravel()


def top_k_of(candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of `candidates` (item numbers) by their `scores`, best first, equal scores by item number."""
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((candidates[top], -scores[top]))]
    return candidates[top].astype(np.int64), scores[top].astype(np.float32)


@dataclass
class Query:
    """What to recommend for.

    `history` is what was played in this context so far (oldest first); `seed` the track the
    user selected; `context` an index into the training contexts when the query is for a
    known user/session (research data). `pool` restricts candidates to hot or cold items,
    `exclude` removes items (already played, the seed itself...).
    """

    history: Sequence[int] = ()
    seed: int | None = None
    context: int | None = None
    pool: Pool = "all"
    exclude: Collection[int] = field(default_factory=tuple)

    def items(self) -> list[int]:
        """History plus seed, in order, the seed last."""
        out = [int(i) for i in self.history]
        if self.seed is not None:
            out.append(int(self.seed))
        return out


@dataclass(frozen=True)
class Validation:
    """Held-out contexts to choose a checkpoint on, as the paper early-stops on its validation users.

    `score(model)` measures the model as it stands (higher is better, e.g. mean NDCG@50 over
    the validation contexts); a model that supports selection calls it after every epoch,
    keeps the best epoch's weights and stops after `patience` epochs without improvement.
    """

    score: Callable[[Recommender], float]
    metric: str
    patience: int = 16  # the paper's code: 16 epochs without a better validation loss stop training


@dataclass(frozen=True)
class Routing:
    """How a query is answered: in hot or cold mode, by whom, over which candidates."""

    mode: Mode
    query: Query
    # False when this recommender cannot rank the candidates the mode asks for (a model
    # without an audio path in cold mode): the caller should ask another recommender.
    supported: bool = True


class Recommender(ABC):
    """Base of every recommender. Subclasses implement `_fit`, `score` and the state hooks."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    # Capability flags (RecTools' recommends_for_warm / recommends_for_cold): whether the model
    # ranks items seen in its training data by what it learned, and items it never saw (cold:
    # through their audio). A model without the cold capability gives every cold item the same
    # score, so a ranking of cold items by it would be arbitrary.
    recommends_for_hot: ClassVar[bool] = True
    recommends_for_cold: ClassVar[bool] = True
    uses_audio: ClassVar[bool] = True
    # Whether `fit(validation=...)` chooses the epoch by the validation metric (else it is ignored).
    selects_by_validation: ClassVar[bool] = False
    # Hyper-parameters for a quick fit on a small catalogue (tests, a first model while the
    # full one trains); the `Params` defaults are the ones meant for real use.
    quick_params: ClassVar[dict[str, object]] = {}
    # The parameters ``paper_compat=True`` stands for (defaults: options given explicitly win).
    paper_params: ClassVar[dict[str, object]] = {}

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        self.seed = int(seed)
        if _as(bool, params.get("paper_compat", False)) is True:
            params = {**self.paper_params, **params}
        self.config = self.Params.build(self.name, params)
        # How the weights in use were chosen (validation-based selection or the fixed budget).
        self.selection: dict[str, object] = {}
        self.validation: Validation | None = None  # set while `fit` runs
        self.hot_mask: np.ndarray | None = None
        self.n_items = 0

    def __getattr__(self, name: str) -> object:
        # Parameters read as attributes (`model.epochs`); only called when normal lookup fails.
        config = self.__dict__.get("config")
        if config is not None and name in config.__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def params(self) -> dict[str, object]:
        """Every parameter with its value (defaults included), as stored with a saved model."""
        return self.config.to_dict()

    @property
    def scores_cold_items(self) -> bool:
        return self.recommends_for_cold

    # -- to implement ------------------------------------------------------------------------

    @abstractmethod
    def _fit(
        self,
        interactions: Interactions,
        item_vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        """Learn from `interactions`; the base has recorded the catalogue facts already.

        `item_vectors` is what `_prepare` made of the catalogue's vectors (the raw ones by default).
        """

    @abstractmethod
    def score(self, query: Query) -> np.ndarray:
        """(n_items,) float32 scores, higher is better. Masking is done by `recommend`."""

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays needed to restore a fitted model (the base stores `hot_mask`)."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore from `_state()` output."""

    def _weights(self) -> dict[str, np.ndarray]:
        """Learned weights to save as safetensors (models with torch modules); none by default."""
        return {}

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore from `_weights()` output; called after `_set_state`."""

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        """Grow the model's per-item state by `new_vectors` rows (cold items, scored from audio)."""
        raise NotImplementedError(f"the {self.name} recommender cannot take new items without retraining")

    def _prepare(self, interactions: Interactions, item_vectors: np.ndarray) -> np.ndarray:
        """The vectors `_fit` trains on (learned models standardise them here)."""
        return item_vectors

    @contextmanager
    def _fitting(self) -> Iterator[None]:
        """Set-up held while `_fit` runs (learned models: threads, seeding, device)."""
        yield

    def _learned(self) -> dict[str, np.ndarray]:
        """What training produced, for the finiteness check: the weights, else the state."""
        return self._weights() or self._state()

    # -- the template ----------------------------------------------------------------------------

    def fit(
        self,
        interactions: Interactions,
        item_vectors: np.ndarray,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        validation: Validation | None = None,
    ) -> Recommender:
        """Train on `interactions`; `item_vectors` has one row per catalogue item.

        With `validation`, models that can (`selects_by_validation`) keep the epoch that scores
        best on it; `selection` then says which epoch and what it scored.
        """
        self._check_cancel(cancel)
        item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self._fitted(interactions, item_vectors)
        self.validation = validation if self.selects_by_validation else None
        self.selection = {}
        try:
            with self._fitting():
                self._fit(interactions, self._prepare(interactions, item_vectors), progress=progress, cancel=cancel)
        finally:
            self.validation = None
        self._check_finite()
        return self

    def _check_finite(self) -> None:
        for key, array in self._learned().items():
            array = np.asarray(array)
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                raise NonFiniteModel(
                    f"the {self.name} recommender learned NaN or infinite values ({key})",
                    "check the item vectors for NaN/inf, or lower the learning rate (lr)",
                )

    # -- hot / cold routing ----------------------------------------------------------------------

    def is_hot(self, item: int) -> bool:
        """Whether `item` occurs in this model's training interactions."""
        return self.hot_mask is not None and 0 <= item < len(self.hot_mask) and bool(self.hot_mask[item])

    def route(self, query: Query) -> Routing:
        """Hot or cold mode for `query`, with its candidate pool set to match.

        Cold mode — the query asks for the cold pool, or its seed is cold for this model — ranks
        only cold items, all through the audio path, so one list never mixes learned and
        audio-only representations; otherwise the query stays as it is (hot mode).
        """
        seed_is_cold = query.seed is not None and not self.is_hot(int(query.seed))
        if query.pool == "cold" or seed_is_cold:
            pool: Pool = "cold" if query.pool == "all" else query.pool
            return Routing("cold", replace(query, pool=pool), self._can_rank(pool))
        return Routing("hot", query, self._can_rank(query.pool))

    def _can_rank(self, pool: Pool) -> bool:
        if pool == "cold":
            return self.recommends_for_cold
        return self.recommends_for_hot

    # -- shared behaviour ----------------------------------------------------------------------

    def score_batch(self, queries: Sequence[Query]) -> np.ndarray:
        if not queries:
            return np.zeros((0, self.n_items), np.float32)
        return np.stack([self.score(q) for q in queries])

    def candidate_mask(self, query: Query) -> np.ndarray:
        mask = np.ones(self.n_items, dtype=bool)
        if query.pool != "all":
            hot = self.hot_mask if self.hot_mask is not None else np.zeros(self.n_items, bool)
            mask &= hot if query.pool == "hot" else ~hot
        if len(query.exclude):  # any collection, numpy arrays included
            excluded = np.fromiter((int(i) for i in query.exclude), np.int64)
            mask[excluded[(excluded >= 0) & (excluded < self.n_items)]] = False
        return mask

    def recommend(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (item indices, scores) among the candidates, best first; ties in random order."""
        return self._top_k(self.score(query), self.candidate_mask(query), k, self.query_generator(query))

    def recommend_batch(self, queries: Sequence[Query], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        scores = self.score_batch(queries)
        return [
            self._top_k(s, self.candidate_mask(q), k, self.query_generator(q))
            for s, q in zip(scores, queries, strict=True)
        ]

    def query_generator(self, query: Query) -> np.random.Generator:
        """Random numbers of one query, seeded by the model's seed and the query's content.

        The same question gets the same answer (a rerun of an evaluation gives identical
        figures, a reloaded model ranks as before), different questions independent draws.
        """
        context = -1 if query.context is None else int(query.context)
        # SeedSequence wants non-negative entries: shift every value up by 1 (-1 → 0).
        entropy = [int(self.seed) % 2**63, context + 1, *(i + 1 for i in query.items())]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    @staticmethod
    def _top_k(
        scores: np.ndarray, mask: np.ndarray, k: int, ties: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best candidates. Equal scores are ordered by `ties` (random), else by item index.

        Random tie-breaking keeps a model that cannot tell candidates apart (popular on cold
        items: all count 0) at the level of chance, instead of ranking by catalogue order.
        """
        candidates = np.flatnonzero(mask)
        if len(candidates) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        cand_scores = scores[candidates]
        k = min(k, len(candidates))
        if k < len(candidates):
            top = np.argpartition(-cand_scores, k - 1)[:k]
            if ties is not None:
                # Every candidate with the k-th score competes for the places left at that score.
                kth = cand_scores[top].min()
                tied = np.flatnonzero(cand_scores == kth)
                if len(tied) > np.count_nonzero(cand_scores[top] == kth):
                    better = np.flatnonzero(cand_scores > kth)
                    top = np.concatenate([better, ties.choice(tied, k - len(better), replace=False)])
        else:
            top = np.arange(len(candidates))
        secondary = candidates[top] if ties is None else ties.random(len(top))
        order = np.lexsort((secondary, -cand_scores[top]))
        chosen = top[order]
        return candidates[chosen].astype(np.int64), cand_scores[chosen].astype(np.float32)

    def _fitted(self, interactions: Interactions, item_vectors: np.ndarray) -> None:
        """Record what every fitted model knows: catalogue size and hot items."""
        if item_vectors.shape[0] != interactions.n_items:
            raise ValueError(
                f"item_vectors has {item_vectors.shape[0]} rows but interactions have {interactions.n_items} items"
            )
        self.n_items = interactions.n_items
        self.hot_mask = interactions.hot_mask()

    def extend_items(self, new_vectors: np.ndarray) -> Recommender:
        """Append catalogue items indexed after training; they are cold and scored from audio.

        Item indices of the existing rows do not change; the new ones follow them.
        """
        new_vectors = np.asarray(new_vectors, dtype=np.float32)
        if new_vectors.ndim != 2:
            raise ValueError("new_vectors must be a (n_new, dim) matrix")
        if self.hot_mask is None:
            raise ValueError(f"the {self.name} recommender is not fitted yet: fit it before adding items")
        if len(new_vectors) == 0:
            return self
        self._extend_items(new_vectors)
        self.hot_mask = np.concatenate([self.hot_mask, np.zeros(len(new_vectors), dtype=bool)])
        self.n_items += len(new_vectors)
        return self

    @staticmethod
    def _check_cancel(cancel: threading.Event | None) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled

    def save(self, path: Path | str) -> Path:
        """Write the fitted model to folder `path` (params.json + state.npz)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.name, "seed": self.seed, "params": self.params, "n_items": self.n_items}
        (folder / "params.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        arrays = dict(self._state())
        if self.hot_mask is not None:
            arrays["hot_mask"] = self.hot_mask
        np.savez(folder / "state.npz", **arrays)
        weights = self._weights()
        weights_file = folder / WEIGHTS_FILE
        if weights:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(weights_file))
        elif weights_file.exists():
            weights_file.unlink()  # a stale file from another model saved in this folder
        return folder

    @classmethod
    def _saved_params(cls, params: dict[str, object]) -> dict[str, object]:
        """Parameters of a saved model as today's `Params` takes them (override to migrate)."""
        return params

    @classmethod
    def load(cls, path: Path | str) -> Recommender:
        folder = Path(path)
        meta = json.loads((folder / "params.json").read_text(encoding="utf-8"))
        if meta["name"] != cls.name:
            raise ValueError(f"{folder} holds a {meta['name']!r} model, not {cls.name!r}")
        model = cls(seed=meta["seed"], **cls._saved_params(meta["params"]))
        with np.load(folder / "state.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        model.n_items = int(meta["n_items"])
        model.hot_mask = arrays.pop("hot_mask", None)
        model._set_state(arrays)
        weights_file = folder / WEIGHTS_FILE
        if weights_file.exists():
            from safetensors.numpy import load_file

            model._set_weights(load_file(str(weights_file)))
        return model


class ContextSequences:
    """Each training context's items in time order, packed as two flat arrays for `state.npz`."""

    def __init__(self, sequences: Sequence[np.ndarray] = ()) -> None:
        self.sequences = [np.asarray(s, dtype=np.int64) for s in sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, context: int) -> np.ndarray:
        return self.sequences[context]

    def known(self, context: int | None) -> bool:
        return context is not None and 0 <= context < len(self.sequences)

    def query_items(self, query: Query) -> list[int]:
        """The context's training items (when the query names a known one), then the query's own."""
        items = [int(i) for i in self.sequences[query.context]] if self.known(query.context) else []
        return items + query.items()

    def to_arrays(self, prefix: str = "context") -> dict[str, np.ndarray]:
        lengths = np.array([len(s) for s in self.sequences], np.int64)
        flat = np.concatenate(self.sequences) if self.sequences else np.zeros(0, np.int64)
        return {f"{prefix}_lengths": lengths, f"{prefix}_flat": flat.astype(np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "context") -> ContextSequences:
        bounds = np.concatenate([[0], np.cumsum(arrays[f"{prefix}_lengths"])]).astype(np.int64)
        flat = arrays[f"{prefix}_flat"]
        return cls([flat[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)])


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)
