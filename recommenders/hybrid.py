"""Hybrid: ELSA whose item factor matrix is an MLP of the audio vectors.

ELSA reconstructs a context's binary row x as ``x A Aᵀ − x`` with L2-normalised item factors
A (see `recommenders.elsa`). Here A is not a free parameter: ``A = normalise(MLP(audio))``
with the MLP ``Linear(d, hidden) → ReLU → Linear(hidden, hidden)``, trained on the
interaction matrix with the normalised MSE. Every item with an audio vector therefore has
factors — cold ones and those appended after training (`extend_items`) included — and is
scored directly by the same formula, no separate cold path needed.

A query's x is its items as a binary row: the training context's items when the query names
a known context, plus the query's own history and seed.

Where the paper's code and text disagree, or where we chose. ``paper_compat=True`` reproduces
the code (``Darel13712/adopting-pretrained-audio``, ``src/``) where it differs:

- Cold columns (``cold_negatives=True``): ``src/train_hybrid.py`` lines 122-126 build the
  interaction matrix over the whole catalogue (``len(ie.classes_)`` counts train and cold
  test items, ``src/utils.py`` lines 25-36), so cold items' all-zero columns are fitted —
  pushed towards zero scores — during training. By default we train on the hot columns only
  (see `recommenders.elsa`) and the MLP never sees a cold item's audio in training.
- Sizes and budget (``hidden=768``, ``epochs=200``, ``batch_size=128``, ``min_steps=0``):
  lines 61, 62 and 64, with early stopping on the validation loss (patience 16). By default:
  hidden 128, 20 epochs of 512 rows but at least 200 optimizer steps (`min_steps`); every
  step recomputes the factors of all hot items through the MLP, so larger batches are what
  keeps a 10k-item catalogue cheap on a CPU. `mrs-tui eval` chooses the epoch on the
  validation contexts when there are enough of them; the app keeps the fixed budget.
- Raw inputs (``standardize=False``): the code feeds the audio vectors as they are; by
  default we standardise them per dimension (`recommenders._torch.InputScaling`).
- Skips (``learn_from_skips``, not in the paper, off with ``paper_compat``): a context's skipped
  or disliked tracks enter its target row as ``−skip_weight`` (see `recommenders.elsa`), and
  tracks only ever skipped join the trained columns, so their audio learns factors away from
  the contexts that turned them down.
- Same in both: Adam at lr 0.01 (line 68), the MLP ``Linear → ReLU → Linear`` with
  normalised outputs and the NMSE loss (``src/hybrid.py``). The code evaluates with a FAISS
  search of the mean history factors; ``(x A) Aⱼᵀ`` ranks identically (rows of A are unit
  vectors), so we score with ELSA's own formula.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recommenders._torch import (
    CheckpointSelection,
    InputScaling,
    LearnedParams,
    LearnedRecommender,
    load_module_weights,
    module_weights,
)
from recommenders.base import Interactions, InvalidParameter, ProgressCallback, Query
from recommenders.elsa import OPTIMIZERS, elsa_scores, elsa_scores_batch, make_optimizer, train_autoencoder


class AudioFactors(nn.Module):
    """Audio vectors → L2-normalised ELSA item factors."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(audio), dim=-1)


@dataclass(frozen=True)
class HybridParams(LearnedParams):
    hidden: int = 128
    epochs: int = 20
    batch_size: int = 512
    lr: float = 0.01
    optimizer: str = "adam"
    min_steps: int = 200
    cold_negatives: bool = False  # train on every column, cold items' empty ones included (the code)

    def check(self, recommender: str) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameter(
                f"optimizer {self.optimizer!r} of the {recommender} recommender is not known",
                f"use one of: {', '.join(OPTIMIZERS)}",
            )


class HybridRecommender(LearnedRecommender):
    name = "hybrid"
    Params = HybridParams
    selects_by_validation = True
    quick_params = {"epochs": 25, "batch_size": 64, "min_steps": 0, "threads": 1}
    paper_params = {
        "paper_compat": True,
        "hidden": 768,
        "epochs": 200,
        "batch_size": 128,
        "min_steps": 0,
        "standardize": False,
        "cold_negatives": True,
        "learn_from_skips": False,
    }

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.net: AudioFactors | None = None
        self.audio = np.zeros((0, 0), np.float32)

    def _fit(
        self,
        interactions: Interactions,
        vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.audio = vectors
        trained = self.hot_mask.copy()
        if self.skips is not None:
            # Tracks only ever skipped have audio, so their factors can learn to sit apart.
            trained[np.unique(self.skips.indices)] = True
        columns = np.arange(self.n_items) if self.cold_negatives else np.flatnonzero(trained)
        matrix = interactions.matrix(binary=True)[:, columns].tocsr()
        device = self.train_device
        net = AudioFactors(self.audio.shape[1], self.hidden).to(device)
        column_audio = torch.from_numpy(self.audio[columns]).to(device)
        optimizer = make_optimizer(self.optimizer, net.parameters(), self.lr)
        selection = CheckpointSelection(self, net)
        self.loss_history = train_autoencoder(
            lambda: net(column_audio),
            optimizer,
            matrix,
            epochs=self.epochs,
            batch_size=self.batch_size,
            device=device,
            generator=self.generator,
            progress=progress,
            cancel=cancel,
            label="hybrid ELSA",
            min_steps=self.min_steps,
            after_epoch=selection.after_epoch,
            **self.skip_columns(columns),
        )
        selection.finish()

    def _use_module(self, module: nn.Module) -> None:
        self.net = module
        self._refresh_factors()

    def _refresh_factors(self) -> None:
        self._forget_item_side()

    @property
    def factors(self) -> np.ndarray:
        """The item side: ELSA factors of every item, from its audio."""
        side = self.item_side()
        return side if side is not None else np.zeros((0, 0), np.float32)

    def _ready_to_serve(self) -> bool:
        return self.net is not None

    def _item_count(self) -> int:
        return len(self.audio)

    def _compute_item_side(self) -> np.ndarray:
        return self._factors_of(self.audio)

    def _factors_of(self, audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net(torch.from_numpy(np.ascontiguousarray(audio, np.float32))).numpy()

    def query_side(self, query: Query) -> np.ndarray | None:
        """``x A``: the sum of the query items' factors (ELSA's ``x A Aᵀ − x`` is its inner products, minus x)."""
        items = np.unique(np.asarray(self.sequences.query_items(query), np.int64))
        if self.net is None or len(items) == 0:
            return None
        return self.factors[items].sum(axis=0)

    def _query_correction(self, query: Query) -> tuple[np.ndarray, float] | None:
        return np.unique(np.asarray(self.sequences.query_items(query), np.int64)), -1.0

    def score(self, query: Query) -> np.ndarray:
        if self.net is None:
            return np.zeros(self.n_items, np.float32)
        return elsa_scores(self.sequences.query_items(query), self.factors)

    def score_batch(self, queries) -> np.ndarray:
        """All queries in one matrix product (evaluation asks thousands at a time)."""
        if self.net is None or not queries:
            return np.zeros((len(queries), self.n_items), np.float32)
        return elsa_scores_batch([self.sequences.query_items(q) for q in queries], self.factors)

    def _weights(self) -> dict[str, np.ndarray]:
        if self.net is None:
            return {}
        return {**module_weights(self.net, "net."), "audio": self.audio, **self.scaling.to_arrays()}

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        self.audio = np.array(arrays["audio"], dtype=np.float32)
        self.scaling = InputScaling.from_arrays(arrays)
        self.net = AudioFactors(self.audio.shape[1], arrays["net.mlp.0.weight"].shape[0])
        load_module_weights(self.net, {k: v for k, v in arrays.items() if k.startswith("net.")}, "net.")
        self.net.eval()
        self._refresh_factors()

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        if self.net is None:
            raise ValueError("the hybrid recommender is not fitted yet")
        new_vectors = self.scaling(new_vectors)
        self.audio = np.ascontiguousarray(np.concatenate([self.audio, new_vectors]), dtype=np.float32)
        self._grow_item_side(lambda: self._factors_of(new_vectors))
