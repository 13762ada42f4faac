"""Contrastive multi-modal projection: audio and collaborative views of an item meet in one space.

Two steps, as in the paper:

1. the collaborative view: plain ELSA (`recommenders.elsa`) fitted on the interaction
   matrix; each hot item's view is its L2-normalised row of the factor matrix A;
2. two towers, ``MLP(audio) → d`` and ``MLP(collaborative) → d`` (each ``Linear → ReLU →
   Linear``, outputs L2-normalised), trained with the decoupled contrastive loss (DCL,
   Yeh et al. 2022; temperature 0.1) in both directions, so that an item's two projections
   come close and different items' projections stay apart. Batches are drawn from the hot
   items; the other items of the batch are the negatives.

Recommending: a cold item is represented by its audio tower output (so are items appended
after training through `extend_items`); a hot item by default by the average of its two
projected views (``hot_view="average"``; ``"audio"`` or ``"collaborative"`` use one view),
re-normalised so that hot and cold items compete on the same scale in the ``all`` pool. A
query's profile is the mean of its items' representations — the training context's items
when the query names a known context, plus its own history and seed — and items are ranked
by inner product with it.

Where the paper's code and text disagree, or where we chose. ``paper_compat=True`` reproduces
the code (``Darel13712/adopting-pretrained-audio``, ``src/``) where it differs; each switch is
a parameter of its own:

- Raw ELSA weights (``raw_collaborative=True``): ``src/train_contrast.py`` line 126 loads the
  factor matrix the ELSA script saved (``get_items_embeddings``) and feeds it to the
  collaborative tower as it is. ELSA itself only ever uses the normalised rows (the text's A),
  which we feed by default: the rows' lengths carry no meaning in ELSA's objective.
- Un-normalised outputs at scoring (``normalize_outputs=False``): the towers are trained on
  normalised outputs (``src/contrastive.py`` lines 35 and 39), but ``extract_embeddings``
  (lines 44-56) returns them un-normalised and those are searched with an inner product,
  and the "average" view is ``(content + collaborative) / 2`` without re-normalising
  (``src/train_contrast.py`` line 222). By default we rank in the cosine space the towers
  were trained in, and re-normalise the average.
- The ADCL loss (``loss="adcl"``): the paper's MusiCNN results are labelled "adcl". ADCL
  (``src/contrastive.py`` lines 142-168) keeps only the cross-view similarities as negatives
  (line 165) and, as its name does not start with "D", is applied in one direction only
  (``src/train_contrast.py`` lines 153 and 168: audio → collaborative). By default we use
  DCL (within- and cross-view negatives) in both directions, as the text describes.
- Sizes and budget (``out_dim=768``, ``elsa_dims=768``, ``batch_size=10000``,
  ``epochs=100``, ``min_steps=0``): towers of 768 (line 52), ELSA rank 768 (``src/elsa.py``
  line 33), batches of 10,000 items (line 49) for up to 100 epochs with early stopping on
  the *training* loss (line 208). By default: towers 128 and ELSA rank 128, ELSA 10 epochs
  of 128 rows, the towers 30 epochs of 512 items, each stage at least 200 optimizer steps.
- ELSA's learning rate: 0.1 in both. The ELSA script's ``lr = 0.01`` (``src/elsa.py``
  line 36) is never passed to ``fit`` (line 42), so the package default, 0.1, is what the
  collaborative view was trained with — as ours is (``elsa_lr``).
- Cold columns (``cold_negatives=True``): the ELSA script fits the whole catalogue, cold
  columns included (``src/elsa.py`` lines 16-20); by default we fit it on the hot columns
  (see `recommenders.elsa`). The towers train on hot items in both
  (``ContrastiveDataset(train)``, line 129).
- Raw inputs (``standardize=False``): the code feeds the audio vectors as they are; by
  default we standardise them per dimension (`recommenders._torch.InputScaling`).
- Skips (``learn_from_skips``, not in the paper, off with ``paper_compat``): the collaborative
  view's ELSA learns from them (negative targets, see `recommenders.elsa`); the towers do not.
- Cold items are represented by the audio ("content") tower in both: the code reports its
  cold metrics for the content view only (the ``if typ == 'content'`` logging at the end of
  ``src/train_contrast.py``; that line number was not re-checked).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recommenders._torch import (
    InputScaling,
    LearnedParams,
    LearnedRecommender,
    inner_products,
    load_module_weights,
    module_weights,
)
from recommenders.base import Interactions, InvalidParameter, ProgressCallback, Query, l2_normalize
from recommenders.elsa import fit_elsa

HOT_VIEWS = ("average", "audio", "collaborative")
LOSSES = ("dcl", "adcl")


def dcl_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """One-way decoupled contrastive loss for row-aligned, L2-normalised views `z1`, `z2` (B × d).

    For anchor i: ``−⟨z1ᵢ, z2ᵢ⟩/τ + log Σ_{k≠i} [exp(⟨z1ᵢ, z1ₖ⟩/τ) + exp(⟨z1ᵢ, z2ₖ⟩/τ)]`` —
    the InfoNCE loss with the positive pair removed from the denominator ("decoupled").
    """
    cross = z1 @ z2.T / temperature
    within = z1 @ z1.T / temperature
    eye = torch.eye(len(z1), dtype=torch.bool, device=z1.device)
    negatives = torch.cat([within.masked_fill(eye, float("-inf")), cross.masked_fill(eye, float("-inf"))], dim=1)
    return (-cross.diagonal() + torch.logsumexp(negatives, dim=1)).mean()


def adcl_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The paper code's "alternative" DCL: only cross-view negatives, ``−⟨z1ᵢ, z2ᵢ⟩/τ + log Σ_{k≠i} exp(⟨z1ᵢ, z2ₖ⟩/τ)``."""
    cross = z1 @ z2.T / temperature
    eye = torch.eye(len(z1), dtype=torch.bool, device=z1.device)
    return (-cross.diagonal() + torch.logsumexp(cross.masked_fill(eye, float("-inf")), dim=1)).mean()


def _tower(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class Towers(nn.Module):
    def __init__(self, audio_dim: int, collaborative_dim: int, out_dim: int) -> None:
        super().__init__()
        self.audio = _tower(audio_dim, out_dim)
        self.collaborative = _tower(collaborative_dim, out_dim)

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(x), dim=-1)

    def embed_collaborative(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.collaborative(x), dim=-1)


@dataclass(frozen=True)
class ContrastiveParams(LearnedParams):
    out_dim: int = 128
    temperature: float = 0.1
    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    elsa_dims: int = 128
    elsa_epochs: int = 10
    elsa_batch_size: int = 128
    elsa_lr: float = 0.1
    hot_view: str = "average"
    min_steps: int = 200
    loss: str = "dcl"  # "dcl": both directions, within- and cross-view negatives; "adcl": the code's
    raw_collaborative: bool = False  # feed ELSA's raw weights, not its normalised rows (the code)
    normalize_outputs: bool = True  # rank with normalised tower outputs (False: the code's raw ones)
    cold_negatives: bool = False  # fit ELSA on every column, cold items' empty ones included (the code)

    def check(self, recommender: str) -> None:
        if self.loss not in LOSSES:
            raise InvalidParameter(
                f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}",
                f"choose the contrastive loss of the {recommender} recommender",
            )
        if self.hot_view not in HOT_VIEWS:
            raise InvalidParameter(
                f"hot_view must be one of {', '.join(HOT_VIEWS)}, not {self.hot_view!r}",
                f"choose the view of hot items for the {recommender} recommender",
            )


class ContrastiveRecommender(LearnedRecommender):
    name = "contrastive"
    Params = ContrastiveParams
    # Quick runs are what small libraries (the demo's 24 tracks) are measured with. There the
    # hot set is smaller than a batch, so every batch is the whole catalogue and a track's
    # same-mood neighbours are all among its negatives; at the paper's temperature (0.1, set
    # for batches of 512-10,000 drawn from tens of thousands of items) the loss then pulls
    # toward telling every track from every other, and the towers lose the very similarity
    # they should carry: on the demo history the lists fell below `random` on hot HitRate@10.
    # A softer temperature keeps the alignment of the two views and the neighbours close.
    quick_params = {
        "epochs": 60,
        "elsa_epochs": 30,
        "elsa_batch_size": 32,
        "min_steps": 0,
        "threads": 1,
        "temperature": 0.5,
    }
    paper_params = {
        "paper_compat": True,
        "out_dim": 768,
        "elsa_dims": 768,
        "batch_size": 10_000,
        "epochs": 100,
        "min_steps": 0,
        "loss": "adcl",
        "raw_collaborative": True,
        "normalize_outputs": False,
        "cold_negatives": True,
        "standardize": False,
        "learn_from_skips": False,
    }

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.towers: Towers | None = None
        self.audio = np.zeros((0, 0), np.float32)
        self.collaborative = np.zeros((0, 0), np.float32)  # ELSA factors of the hot items, in hot order

    def _fit(
        self,
        interactions: Interactions,
        vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.audio = vectors
        hot = np.flatnonzero(self.hot_mask)
        generator, device = self.generator, self.train_device
        # Progress in percent over both stages, each weighted by its configured epochs (the
        # loops may add epochs for `min_steps`, so their own totals are not known up front).
        elsa_share = 100.0 * self.elsa_epochs / max(self.elsa_epochs + self.epochs, 1)

        def stage(start: float, width: float):
            if progress is None:
                return None
            end = start + width

            def report(done: float, total: float, message: str) -> None:
                finished = done >= total and end >= 100.0 - 1e-9
                progress(100.0 if finished else start + width * done / total, 100.0, message)

            return report

        columns = np.arange(self.n_items) if self.cold_negatives else hot
        matrix = interactions.matrix(binary=True)[:, columns].tocsr()
        factors = fit_elsa(
            matrix,
            self.elsa_dims,
            epochs=self.elsa_epochs,
            batch_size=self.elsa_batch_size,
            lr=self.elsa_lr,
            optimizer="nadam",
            device=device,
            generator=generator,
            progress=stage(0.0, elsa_share),
            cancel=cancel,
            min_steps=self.min_steps,
            normalized=not self.raw_collaborative,
            **self.skip_columns(columns),
        )
        self.collaborative = factors[hot] if self.cold_negatives else factors

        towers = Towers(self.audio.shape[1], self.elsa_dims, self.out_dim).to(device)
        optimizer = torch.optim.Adam(towers.parameters(), lr=self.lr)
        audio_hot = torch.from_numpy(self.audio[hot]).to(device)
        collaborative_hot = torch.from_numpy(self.collaborative).to(device)
        loop = self._epoch_loop(len(hot), "contrastive towers", stage(elsa_share, 100.0 - elsa_share), cancel)

        def step(batch: torch.Tensor) -> float:
            if len(batch) < 2:  # a lone item has no negatives: the loss is undefined
                return 0.0
            batch = batch.to(device)
            a = towers.embed_audio(audio_hot[batch])
            c = towers.embed_collaborative(collaborative_hot[batch])
            if self.loss == "adcl":
                loss = adcl_loss(a, c, self.temperature)
            else:
                loss = dcl_loss(a, c, self.temperature) + dcl_loss(c, a, self.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        self.loss_history = loop.run(step)
        self.towers = towers.cpu().eval()
        self._refresh_embeddings()

    def _refresh_embeddings(self) -> None:
        self._forget_item_side()

    @property
    def embeddings(self) -> np.ndarray:
        """The item side: every item's representation (`_compute_item_side`)."""
        side = self.item_side()
        return side if side is not None else np.zeros((0, 0), np.float32)

    def _ready_to_serve(self) -> bool:
        return self.towers is not None

    def _item_count(self) -> int:
        return len(self.audio)

    def query_side(self, query: Query) -> np.ndarray | None:
        return self.profile(query)

    def _compute_item_side(self) -> np.ndarray:
        """Item representations: audio tower for every item, the chosen view for hot ones."""
        with torch.no_grad():
            audio = self._audio_view(self.audio)
            embeddings = audio.copy()
            if self.hot_view != "audio" and len(self.collaborative):
                hot = np.flatnonzero(self.hot_mask[: len(self.audio)])
                collaborative = self.towers.collaborative(torch.from_numpy(self.collaborative))
                if self.normalize_outputs:
                    collaborative = F.normalize(collaborative, dim=-1)
                collaborative = collaborative.numpy()
                if self.hot_view == "collaborative":
                    embeddings[hot] = collaborative
                elif self.normalize_outputs:
                    embeddings[hot] = l2_normalize(audio[hot] + collaborative)
                else:
                    embeddings[hot] = (audio[hot] + collaborative) / 2
        return embeddings

    def _audio_view(self, vectors: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.towers.audio(torch.from_numpy(np.ascontiguousarray(vectors, np.float32)))
            return (F.normalize(out, dim=-1) if self.normalize_outputs else out).numpy()

    def profile(self, query: Query) -> np.ndarray | None:
        """Mean representation of the query's items (None when it has none)."""
        items = self.sequences.query_items(query)
        if self.towers is None or not items:
            return None
        return self.embeddings[np.asarray(items, np.int64)].mean(axis=0)

    def score(self, query: Query) -> np.ndarray:
        profile = self.profile(query)
        if profile is None:
            return np.zeros(self.n_items, np.float32)
        return inner_products(self.embeddings, profile[None, :])[0]

    def score_batch(self, queries) -> np.ndarray:
        """All queries in one matrix product (evaluation asks thousands at a time)."""
        profiles = np.zeros((len(queries), self.embeddings.shape[1] if self.embeddings.ndim == 2 else 0), np.float32)
        for row, query in enumerate(queries):
            profile = self.profile(query)
            if profile is not None:
                profiles[row] = profile
        if self.towers is None:
            return np.zeros((len(queries), self.n_items), np.float32)
        return inner_products(self.embeddings, profiles)

    def _weights(self) -> dict[str, np.ndarray]:
        if self.towers is None:
            return {}
        return {
            **module_weights(self.towers, "towers."),
            "audio": self.audio,
            "collaborative": self.collaborative,
            **self.scaling.to_arrays(),
        }

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        self.audio = np.array(arrays["audio"], dtype=np.float32)
        self.scaling = InputScaling.from_arrays(arrays)
        self.collaborative = np.array(arrays["collaborative"], dtype=np.float32)
        out_dim = arrays["towers.audio.0.weight"].shape[0]
        self.towers = Towers(self.audio.shape[1], self.collaborative.shape[1], out_dim)
        load_module_weights(self.towers, {k: v for k, v in arrays.items() if k.startswith("towers.")}, "towers.")
        self.towers.eval()
        self._refresh_embeddings()

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        if self.towers is None:
            raise ValueError("the contrastive recommender is not fitted yet")
        new_vectors = self.scaling(new_vectors)
        self.audio = np.ascontiguousarray(np.concatenate([self.audio, new_vectors]), dtype=np.float32)
        # hot_mask grows after this hook: the new rows are cold, so only their audio view counts.
        self._grow_item_side(lambda: self._audio_view(new_vectors))
