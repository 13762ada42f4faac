"""Training plumbing shared by the torch-based recommenders (shallow, contrastive, hybrid, bert4rec).

Only recommender modules import this file, and the registry imports those lazily, so torch
stays out of the app's startup. The pieces:

- `resolve_device`: CUDA when torch sees it, else CPU, unless the caller names a device.
- `seeded`: seeds torch's global generator (weight initialisation) and returns a separate CPU
  generator for sampling (batches, negatives, masks). Sampling on the CPU generator keeps a
  seed's draws the same on every device; the training itself is then bit-identical on CPU
  and equal up to float rounding of atomic adds on CUDA.
- `EpochLoop`: runs epochs of shuffled mini-batches, checks the cancel event before every
  batch, and reports progress at most once per epoch (and at most a few times a second), so a
  UI worker never drowns in messages. Its `min_steps` reconciles the two scales a model must
  serve: default epoch counts are sized so that a research log (100k interactions) trains
  in minutes, which on a personal history of a few hundred sessions would be only a few
  dozen optimizer steps; there, where steps are cheap, the loop adds epochs until it has
  made at least `min_steps` updates.
- `intra_op_threads`: an optional cap on torch's CPU threads while a model trains. Small
  models (a personal library) gain nothing from intra-op parallelism, and on a busy machine
  its spin-waiting threads cost ten times the CPU of a single thread; ``threads=1`` in a
  recommender's parameters avoids that. The setting is process-wide, so it is restored as
  soon as training ends.
- `InputScaling`: per-dimension standardisation of the audio vectors, fitted on the
  catalogue when a model trains and stored with it. For models whose first layer is linear it
  is only a re-parametrisation of that layer, but it keeps Adam's step sizes meaningful
  across backends whose vectors differ in scale by orders of magnitude (pooled transformer
  states, ReLU activations, handcrafted features). The paper feeds raw vectors.
- `inner_products`: query-time scoring, ``queries @ itemsᵀ``, on one thread for a handful of
  queries. A single query against 10k items is a 0.05 ms product, but numpy's BLAS hands it
  to its thread pool, and on a busy machine (or while a model trains in the background) a
  descheduled pool thread turned that into 8–12 ms, every query.
- `module_weights` / `load_module_weights`: state dicts as numpy arrays for the base class's
  safetensors save path.

After training every model is moved to the CPU and put in eval mode: queries are single
vectors, where the CPU answers in well under a millisecond and a GPU round trip would not,
and a CPU copy makes save → load → recommend give identical numbers.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mrs_tui.errors import UserError
from mrs_tui.progress import Throttle
from recommenders.base import (
    Cancelled,
    ContextSequences,
    Interactions,
    Params,
    ProgressCallback,
    Query,
    Recommender,
)
from recommenders.serving import inner_product_search


def resolve_device(requested: str | None = None) -> torch.device:
    """The device to train on: `requested` ("cpu", "cuda", "cuda:1"...) or the best one torch sees."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r}", "use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {requested!r} asked for, but torch sees no CUDA GPU", "use device='cpu' or 'auto'")
    return device


def seeded(seed: int) -> torch.Generator:
    """Seed weight initialisation and return a CPU generator for every random draw of training."""
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with at most `threads` torch CPU threads (None: leave torch's setting)."""
    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class LearnedParams(Params):
    """Options every learned recommender takes besides its own hyper-parameters."""

    standardize: bool = True  # per-dimension standardisation of the audio inputs (`InputScaling`)
    device: str | None = None  # "cpu", "cuda", "cuda:N"; None or "auto": the best one torch sees
    threads: int | None = None  # cap on torch's CPU threads while training (None: torch's setting)
    # The training budget (`EpochLoop`); each model declares its own defaults.
    epochs: int = 10
    batch_size: int = 128
    min_steps: int = 0
    # Skips and dislikes as negatives (`Interactions.negative_matrix`); the paper had none.
    learn_from_skips: bool = True
    skip_weight: float = 1.0  # weight of the skip terms against the model's own loss


class LearnedRecommender(Recommender):
    """What the recommenders that learn from history share: how a fit begins (threads, seed,
    device, input scaling, training sequences) and the non-weight state they keep (training
    sequences for session queries, the loss curve)."""

    Params = LearnedParams
    # Whether a big item side may be searched through an HNSW graph (`recommenders.serving`).
    item_graph = True

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.scaling: InputScaling | None = None
        self.sequences = ContextSequences()
        self.loss_history: list[float] = []
        # Training only: the turned-down (context, item) pairs as CSR, None when not learning from them.
        self.skips = None
        # Serving: the item side (`item_side`), computed on first use and kept, and a FAISS index over it.
        self._item_side: np.ndarray | None = None
        self.item_index: dict = {}  # FAISS indexes over the item side, see `inner_product_search`
        # Set while `_fit` runs: the CPU generator of every random draw, and the training device.
        self.generator: torch.Generator | None = None
        self.train_device: torch.device | None = None

    @contextmanager
    def _fitting(self) -> Iterator[None]:
        with intra_op_threads(self.threads):
            self.generator = seeded(self.seed)
            self.train_device = resolve_device(self.device)
            try:
                yield
            finally:
                self.generator = None
                self.train_device = None

    def _epoch_loop(
        self, n_examples: int, label: str, progress: ProgressCallback | None, cancel: threading.Event | None
    ) -> EpochLoop:
        """The training loop over `n_examples`, with this model's budget (epochs, batch size, min_steps)."""
        return EpochLoop(
            n_examples=n_examples,
            batch_size=self.batch_size,
            epochs=self.epochs,
            generator=self.generator,
            progress=progress,
            cancel=cancel,
            label=label,
            min_steps=self.min_steps,
        )

    def _prepare(self, interactions: Interactions, item_vectors: np.ndarray) -> np.ndarray:
        """The input scaling and the training sequences; returns the scaled audio."""
        self.scaling = InputScaling.fit(item_vectors, enabled=self.standardize)
        self.sequences = ContextSequences(interactions.sequences())
        use = self.learn_from_skips and self.skip_weight > 0 and interactions.has_negatives
        self.skips = interactions.negative_matrix() if use else None
        if self.skips is not None and self.skips.nnz == 0:
            self.skips = None
        return self.scaling(item_vectors)

    # -- serving: score = item side · query side -------------------------------------------------
    #
    # Every learned model here scores a query as an inner product of one query vector with a
    # fixed matrix of item vectors (projected audio, factors, embeddings). That matrix depends
    # only on the fitted weights and the items, so it is computed once per fitted model and
    # kept: `set_item_side` installs a copy read from disk (the serving cache), `_extend_items`
    # appends rows for items added after training, and `search` answers a query with one
    # query-side pass plus one FAISS inner-product search, pool and exclusions applied inside
    # the search.

    def item_side(self) -> np.ndarray | None:
        """(n_items, d) float32 item matrix the query vectors are scored against; None before fitting."""
        if self._item_side is None and self._ready_to_serve():
            self._item_side = np.ascontiguousarray(self._compute_item_side(), dtype=np.float32)
        return self._item_side

    def set_item_side(self, matrix: np.ndarray) -> None:
        """Install an item side computed earlier for these weights (rows: this model's items)."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != self._item_count():
            raise ValueError(f"an item side of {len(matrix)} rows does not fit a model of {self._item_count()} items")
        self._item_side = matrix
        self.item_index.clear()

    def _forget_item_side(self) -> None:
        """The weights changed: the item side is computed again on first use."""
        self._item_side = None
        self.item_index.clear()

    def _grow_item_side(self, new_rows: Callable[[], np.ndarray]) -> None:
        """Items were appended: extend a computed item side by their rows only (nothing to do when lazy)."""
        if self._item_side is not None:
            self._item_side = np.ascontiguousarray(np.concatenate([self._item_side, new_rows()]), dtype=np.float32)
            self.item_index.clear()

    def _ready_to_serve(self) -> bool:
        return False

    def _item_count(self) -> int:
        """Items the model holds inputs for (catalogue items plus those appended)."""
        return self.n_items

    def _compute_item_side(self) -> np.ndarray:
        raise NotImplementedError

    def query_side(self, query: Query) -> np.ndarray | None:
        """The query's vector (d,), or None when the model cannot place it (then `search` falls back)."""
        return None

    def _query_correction(self, query: Query) -> tuple[np.ndarray, float] | None:
        """Items whose score differs from the inner product by a constant for this query, and by how much."""
        return None

    def search(self, query: Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`recommend` through the kept item side: one query-side pass, one FAISS search.

        The same top-k as `recommend` up to the order of exactly equal scores.
        """
        side = self.item_side()
        vector = None if side is None or len(side) != self.n_items else self.query_side(query)
        if vector is None:
            return self.recommend(query, k)
        return inner_product_search(self, self.item_index, side, vector, query, k, self._query_correction(query))

    def skip_columns(self, columns: np.ndarray) -> dict[str, object]:
        """`train_autoencoder`'s skip arguments for a matrix restricted to `columns` (none without skips)."""
        if self.skips is None:
            return {}
        skips = self.skips[:, columns].tocsr()
        return {"skips": skips, "skip_weight": self.skip_weight} if skips.nnz else {}

    def _use_module(self, module: nn.Module) -> None:
        """Make `module` (CPU, eval mode) the model that answers queries (models that select by validation)."""
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray]:
        return {**self.sequences.to_arrays(), "loss_history": np.asarray(self.loss_history, np.float64)}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.sequences = ContextSequences.from_arrays(arrays)
        self.loss_history = [float(x) for x in arrays.get("loss_history", [])]


def sample_skips(skips, contexts: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One turned-down item per context (uniformly among its skips), and which contexts have any.

    `skips` is the contexts x items CSR of `Interactions.negative_matrix`; the item of a
    context without skips is 0 and masked out.
    """
    indptr = torch.from_numpy(skips.indptr.astype(np.int64))
    indices = torch.from_numpy(skips.indices.astype(np.int64))
    start = indptr[contexts]
    count = indptr[contexts + 1] - start
    has = count > 0
    offset = (torch.rand(len(contexts), generator=generator) * count.clamp(min=1)).long()
    picked = torch.where(has, indices[(start + offset).clamp(max=max(len(indices) - 1, 0))], 0)
    return picked, has


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class CheckpointSelection:
    """The paper's model selection: after every epoch, score the weights on the validation
    contexts, keep the best epoch's copy, stop after `patience` epochs without improvement.

    Without validation (the app, or a validation part too small to choose anything) it keeps
    the last epoch: the fixed training budget. `finish` installs the chosen weights in the
    model (through its `_use_module`) and records the rule in `model.selection`.
    """

    def __init__(self, model: LearnedRecommender, module: nn.Module) -> None:
        self.model = model
        self.module = module
        self.validation = model.validation
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_module: nn.Module | None = None
        self.stale = 0
        self.epochs = 0

    def after_epoch(self, epoch: int) -> bool:
        self.epochs = epoch
        if self.validation is None:
            return False
        snapshot = copy.deepcopy(self.module).cpu().eval()
        self.model._use_module(snapshot)
        value = float(self.validation.score(self.model))
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_epoch, self.best_module, self.stale = value, epoch, snapshot, 0
        else:
            self.stale += 1
        return self.stale >= self.validation.patience

    def finish(self) -> None:
        if self.best_module is None:
            self.model._use_module(self.module.cpu().eval())
            self.model.selection = {"rule": "fixed budget", "epoch": self.epochs, "epochs_run": self.epochs}
            return
        self.model._use_module(self.best_module)
        self.model.selection = {
            "rule": "validation",
            "epoch": self.best_epoch,
            "epochs_run": self.epochs,
            "metric": self.validation.metric,
            "value": self.best_value,
        }


class InputScaling:
    """``(x − mean) / std`` per dimension; the identity when standardisation is off."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    @classmethod
    def fit(cls, vectors: np.ndarray, *, enabled: bool = True) -> InputScaling:
        dim = vectors.shape[1]
        if not enabled or len(vectors) < 2:
            return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))
        std = vectors.std(axis=0)
        return cls(vectors.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[-1] != len(self.mean):
            raise ValueError(
                f"the model was trained on {len(self.mean)}-d vectors, not {vectors.shape[-1]}-d: "
                "use the backend it was trained with"
            )
        return np.ascontiguousarray((np.asarray(vectors, np.float32) - self.mean) / self.std, dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"input_mean": self.mean, "input_std": self.std}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> InputScaling:
        return cls(arrays["input_mean"], arrays["input_std"])


SINGLE_THREAD_QUERIES = 16


def inner_products(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``queries @ items.T`` as float32 (queries: Q × d, items: N × d), single-threaded for small Q."""
    threads = 1 if len(queries) <= SINGLE_THREAD_QUERIES else None
    with torch.inference_mode(), intra_op_threads(threads):
        left = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        right = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32))
        return (left @ right.T).numpy()


def module_weights(module: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module_weights(module: nn.Module, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
    state = {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)


def csr_rows_to_dense(matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Dense float32 tensor of the given CSR rows, built on `device` from the sparse entries."""
    sub = matrix[rows].tocoo()
    dense = torch.zeros(sub.shape, dtype=torch.float32, device=device)
    index = (
        torch.from_numpy(sub.row.astype(np.int64)).to(device),
        torch.from_numpy(sub.col.astype(np.int64)).to(device),
    )
    dense[index] = torch.from_numpy(sub.data.astype(np.float32)).to(device)
    return dense


class EpochLoop:
    """Epochs of shuffled mini-batches with cancellation and throttled progress.

    `run(step)` calls `step(batch_indices)` (a CPU int64 tensor of example indices) for every
    batch and expects the batch loss as a float; it returns the mean loss of each epoch.
    """

    def __init__(
        self,
        *,
        n_examples: int,
        batch_size: int,
        epochs: int,
        generator: torch.Generator,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        label: str,
        min_steps: int = 0,
        shuffle: bool = True,
        min_report_interval: float = 0.25,
    ) -> None:
        self.n_examples = int(n_examples)
        self.batch_size = max(1, int(batch_size))
        self.epochs = int(epochs)
        if min_steps and self.batches_per_epoch:
            self.epochs = max(self.epochs, math.ceil(min_steps / self.batches_per_epoch))
        self.generator = generator
        self.progress = progress
        self.cancel = cancel
        self.label = label
        self.shuffle = shuffle
        self._throttle = Throttle(min_report_interval)

    @property
    def batches_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_examples / self.batch_size)) if self.n_examples else 0

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled

    def batches(self) -> Iterator[torch.Tensor]:
        order = (
            torch.randperm(self.n_examples, generator=self.generator) if self.shuffle else torch.arange(self.n_examples)
        )
        for start in range(0, self.n_examples, self.batch_size):
            self.check_cancel()
            yield order[start : start + self.batch_size]

    def run(
        self, step: Callable[[torch.Tensor], float], after_epoch: Callable[[int], bool] | None = None
    ) -> list[float]:
        """Train; `after_epoch(epochs_done)` may end training early by returning True."""
        history: list[float] = []
        self.check_cancel()
        for epoch in range(self.epochs):
            total, count = 0.0, 0
            for batch in self.batches():
                total += step(batch) * len(batch)
                count += len(batch)
            history.append(total / max(count, 1))
            self.report(epoch + 1, f"{self.label}: epoch {epoch + 1}/{self.epochs}, loss {history[-1]:.4f}")
            if after_epoch is not None and after_epoch(epoch + 1):
                break
        return history

    def report(self, done: int, message: str) -> None:
        if self.progress is None:
            return
        if self._throttle.ready(final=done >= self.epochs):
            self.progress(done, self.epochs, message)
