"""ELSA, the scalable linear shallow autoencoder (Vančura et al., WSDM 2022), as the pieces we share.

ELSA keeps one low-rank item factor matrix A (items × r) with L2-normalised rows and
reconstructs a context's binary row x as ``x A Aᵀ − x``: the ``− x`` removes each item's
similarity with itself (the diagonal of A Aᵀ is 1 after normalisation), the low-rank
analogue of EASE's zero-diagonal constraint. It is trained with the normalised MSE — the
MSE between the L2-normalised prediction and the L2-normalised input row — so only the
direction of a row's reconstruction matters, not its length.

Two recommenders build on it:

- ``contrastive`` fits plain ELSA (A a free parameter, Xavier-initialised as in the
  reference implementation, NAdam at lr 0.1) and uses the normalised rows of A as the
  collaborative view of each hot item;
- ``hybrid`` makes A an MLP of the audio vectors, so cold items get factors too.

Both train on the *hot* columns only. The paper's code builds the interaction matrix over
the whole catalogue, cold items included: their all-zero columns then teach the model to
push those particular items away from everybody, a use of the held-out catalogue that the
paper's text does not describe and that a real app (where "cold" means "not played yet")
must not learn. Restricting training to the hot columns is also cheaper.

Scoring a query uses the same formula with x the query's items as a binary row. Because
the rows of A are unit vectors, ``(x A) Aⱼᵀ`` is, up to a constant, the inner product of
item j's factors with the sum of the history's factors, i.e. the ranking the paper's
evaluation gets from a FAISS search with the mean history vector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recommenders._torch import EpochLoop, csr_rows_to_dense, inner_products


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
) -> list[float]:
    """Fit ELSA-style factors to the rows of `matrix` (contexts × items, CSR) with the NMSE loss.

    `factors()` returns the current normalised factor matrix (recomputed every step, so the
    hybrid's MLP is part of the graph). Empty rows carry no signal and are skipped.
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
        x = csr_rows_to_dense(matrix, rows[batch.numpy()], device)
        loss = nmse_loss(reconstruct(x, factors()), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return loop.run(step)


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
) -> np.ndarray:
    """Train plain ELSA on `matrix` and return its normalised item factors (n_items × n_dims)."""
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
    )
    with torch.no_grad():
        return model.factors().cpu().numpy().astype(np.float32)


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
