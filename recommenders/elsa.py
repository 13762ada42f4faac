"""ELSA, the scalable linear shallow autoencoder (Vančura et al., WSDM 2022): the collaborative-only
baseline (`elsa`), and the pieces the audio models share.

ELSA keeps one low-rank item factor matrix A (items × r) with L2-normalised rows and
reconstructs a context's binary row x as ``x A Aᵀ − x``: the ``− x`` removes each item's
similarity with itself (the diagonal of A Aᵀ is 1 after normalisation), the low-rank
analogue of EASE's zero-diagonal constraint. It is trained with the normalised MSE — the
MSE between the L2-normalised prediction and the L2-normalised input row — so only the
direction of a row's reconstruction matters, not its length.

Three recommenders build on it:

- ``elsa`` is plain ELSA on the play matrix, no audio at all (A a free parameter,
  Xavier-initialised, NAdam at lr 0.1): the row that shows what audio adds over pure
  collaborative filtering on hot items. In the paper's code it is a model of its own
  (``src/elsa.py``), and on small catalogues it can be the strongest hot model. It has no
  factors for items it never saw, so it **scores no cold item** (`recommends_for_cold` is
  False: the evaluation leaves its cold cells empty and says why, and the app asks knn
  for new tracks instead);
- ``contrastive`` fits the same plain ELSA and uses the normalised rows of A as the
  collaborative view of each hot item;
- ``hybrid`` makes A an MLP of the audio vectors, so cold items get factors too.

All train on the *hot* columns only by default. The paper's code builds the interaction
matrix over the whole catalogue, cold items included (``src/elsa.py`` lines 16-20,
``src/train_hybrid.py`` lines 122-126): their all-zero columns then teach the model to push
those particular items away from everybody, a use of the held-out catalogue that the paper's
text does not describe and that a real app (where "cold" means "not played yet") must not
learn. ``cold_negatives=True`` (part of ``paper_compat``) trains on every column as the code
does.

The ``elsa`` baseline's defaults are those of the contrastive model's collaborative view
(rank 128, 10 epochs of 128 rows, at least 200 optimizer steps); ``paper_compat=True`` gives
the code's: rank 768, 10 epochs of 128 rows (``src/elsa.py`` lines 33-36) and the learning
rate the ``elsa`` package uses by default, 0.1 — the script's ``lr = 0.01`` (line 36) is
never passed to ``ELSA.fit`` (line 42), so it only names the run. The package's own
initialisation and optimizer could not be checked against its source here; we use Xavier
initialisation and NAdam, as the existing collaborative view did.

Skips (``learn_from_skips``, not in the paper, off with ``paper_compat``): the target row of a
context carries ``−skip_weight`` at the items it skipped or disliked (the input row stays its
positives), so the reconstruction is pushed away from them; in the ``elsa`` baseline and the
contrastive model's collaborative view only hot items have columns.

Scoring a query uses the same formula with x the query's items as a binary row. Because
the rows of A are unit vectors, ``(x A) Aⱼᵀ`` is, up to a constant, the inner product of
item j's factors with the sum of the history's factors, i.e. the ranking the paper's
evaluation gets from a FAISS search with the mean history vector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recommenders._torch import (
    EpochLoop,
    LearnedParams,
    LearnedRecommender,
    csr_rows_to_dense,
    inner_products,
)
from recommenders.base import Interactions, ProgressCallback, Query


def reconstruct(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """ELSA's prediction ``x A Aᵀ − x`` for a batch of rows `x` (contexts × items)."""
    return (x @ factors) @ factors.T - x


def nmse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalised MSE: the MSE between the row-wise L2-normalised prediction and target."""
    return F.mse_loss(F.normalize(prediction, dim=-1), F.normalize(target, dim=-1), reduction="mean")


class ELSA(nn.Module):
    """Plain ELSA: A is a free (n_items × n_dims) parameter, normalised row-wise when used."""

    def __init__(self, n_items: int, n_dims: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_items, n_dims)))

    def factors(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reconstruct(x, self.factors())


OPTIMIZERS = ("adam", "nadam")
NO_SCORE = np.float32(-np.finfo(np.float32).max)  # below every real score, and still a number


def make_optimizer(name: str, parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "nadam":
        return torch.optim.NAdam(parameters, lr=lr)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: use 'adam' or 'nadam'")


def train_autoencoder(
    factors: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    matrix,
    *,
    epochs: int,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    progress=None,
    cancel=None,
    label: str = "ELSA",
    min_steps: int = 0,
    after_epoch: Callable[[int], bool] | None = None,
    skips=None,
    skip_weight: float = 1.0,
) -> list[float]:
    """Fit ELSA-style factors to the rows of `matrix` (contexts × items, CSR) with the NMSE loss.

    `factors()` returns the current normalised factor matrix (recomputed every step, so the
    hybrid's MLP is part of the graph). Empty rows carry no signal and are skipped. `skips`
    (same shape, the turned-down pairs) enter the target row as ``−skip_weight``: the
    reconstruction of a context is pulled away from what it skipped, not only towards what
    it played; the input row stays the positives.
    """
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    loop = EpochLoop(
        n_examples=len(rows),
        batch_size=batch_size,
        epochs=epochs,
        generator=generator,
        progress=progress,
        cancel=cancel,
        label=label,
        min_steps=min_steps,
    )

    def step(batch: torch.Tensor) -> float:
        chosen = rows[batch.numpy()]
        x = csr_rows_to_dense(matrix, chosen, device)
        target = x if skips is None else x - skip_weight * csr_rows_to_dense(skips, chosen, device)
        loss = nmse_loss(reconstruct(x, factors()), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return loop.run(step, after_epoch)


def fit_elsa(
    matrix,
    n_dims: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    device: torch.device,
    generator: torch.Generator,
    progress=None,
    cancel=None,
    min_steps: int = 0,
    normalized: bool = True,
    skips=None,
    skip_weight: float = 1.0,
) -> np.ndarray:
    """Train plain ELSA on `matrix` and return its item factors (n_items × n_dims).

    The factors are the normalised rows of A (what ELSA itself uses), or with
    ``normalized=False`` the raw weights (what the paper's code saves and feeds on).
    """
    model = ELSA(matrix.shape[1], n_dims).to(device)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    train_autoencoder(
        model.factors,
        opt,
        matrix,
        epochs=epochs,
        batch_size=batch_size,
        device=device,
        generator=generator,
        progress=progress,
        cancel=cancel,
        label="collaborative view (ELSA)",
        min_steps=min_steps,
        skips=skips,
        skip_weight=skip_weight,
    )
    with torch.no_grad():
        factors = model.factors() if normalized else model.weight
        return factors.cpu().numpy().astype(np.float32)


def elsa_scores(items: Iterable[int], factors: np.ndarray) -> np.ndarray:
    """``x A Aᵀ − x`` for one binary row x given by its item indices (query time)."""
    return elsa_scores_batch([items], factors)[0]


def elsa_scores_batch(rows: list[Iterable[int]], factors: np.ndarray) -> np.ndarray:
    """``x A Aᵀ − x`` for many binary rows at once: one (rows × r) @ (r × items) product."""
    unique = [np.unique(np.fromiter((int(i) for i in items), np.int64)) for items in rows]
    profiles = np.zeros((len(rows), factors.shape[1]), np.float32)
    for r, idx in enumerate(unique):
        if len(idx):
            profiles[r] = factors[idx].sum(axis=0)
    scores = inner_products(factors, profiles)
    for r, idx in enumerate(unique):
        scores[r, idx] -= 1.0
    return scores


@dataclass(frozen=True)
class ELSAParams(LearnedParams):
    dims: int = 128
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    min_steps: int = 200
    cold_negatives: bool = False  # train on every column, cold items' empty ones included (the code)


class ELSARecommender(LearnedRecommender):
    """Plain ELSA on the play matrix: collaborative filtering only, no audio, no cold items."""

    name = "elsa"
    Params = ELSAParams
    uses_audio = False
    recommends_for_cold = False
    quick_params = {"epochs": 30, "batch_size": 32, "min_steps": 0, "threads": 1}
    paper_params = {
        "paper_compat": True,
        "dims": 768,
        "min_steps": 0,
        "cold_negatives": True,
        "learn_from_skips": False,
    }

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.factors = np.zeros((0, 0), np.float32)  # one row per item; zeros for the cold ones

    def _prepare(self, interactions: Interactions, item_vectors: np.ndarray) -> np.ndarray:
        super()._prepare(interactions, np.zeros((len(item_vectors), 1), np.float32))
        return item_vectors  # never read: this model uses no audio

    def _fit(
        self,
        interactions: Interactions,
        item_vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        columns = np.arange(self.n_items) if self.cold_negatives else np.flatnonzero(self.hot_mask)
        matrix = interactions.matrix(binary=True)[:, columns].tocsr()
        learned = fit_elsa(
            matrix,
            self.dims,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer="nadam",
            device=self.train_device,
            generator=self.generator,
            progress=progress,
            cancel=cancel,
            min_steps=self.min_steps,
            **self.skip_columns(columns),
        )
        self.factors = np.zeros((self.n_items, self.dims), np.float32)
        self.factors[columns] = learned
        self.factors[~self.hot_mask] = 0.0  # a cold item's factors say nothing about it

    def score(self, query: Query) -> np.ndarray:
        return self.score_batch([query])[0]

    def score_batch(self, queries) -> np.ndarray:
        if not queries or len(self.factors) == 0:
            return np.zeros((len(queries), self.n_items), np.float32)
        scores = elsa_scores_batch([self.sequences.query_items(q) for q in queries], self.factors)
        scores[:, ~self.hot_mask] = NO_SCORE  # no cold item is ever ranked above a hot one
        return scores

    def _weights(self) -> dict[str, np.ndarray]:
        return {"factors": self.factors} if len(self.factors) else {}

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        self.factors = np.array(arrays["factors"], dtype=np.float32)

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        self.factors = np.concatenate([self.factors, np.zeros((len(new_vectors), self.factors.shape[1]), np.float32)])
