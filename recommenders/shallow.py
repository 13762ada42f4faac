"""Shallow net: one shared Linear+ReLU projection of context and item vectors, cosine score.

As in the paper's text: every context (user/session) and every item has an input vector of
the audio dimension; both go through the same ``Linear + ReLU`` projection and are compared
by cosine similarity. Training minimises the hinge loss ``max(0, margin − s(c, i⁺) + s(c, i⁻))``
(margin 0.2) over each positive (context, item) pair against `negatives` sampled items (20).
Item inputs are the audio vectors, frozen by default (``freeze_items``); a context's input
starts as the mean of its items' audio vectors and is learned (``freeze_contexts=False``). Cold items — and items added
after training through `extend_items` — are scored through the same projection of their
audio, which is why the item side stays frozen unless asked otherwise.

A query that is not a training context (the app's current session) gets the input its
context vector would have started from: the mean of its items' input vectors. A query with
both a known context and items of its own averages the two inputs.

Where the paper's code and text disagree (we follow the text by default), and where we chose.
``paper_compat=True`` reproduces the code (``Darel13712/adopting-pretrained-audio``, ``src/``)
where it differs; each switch is a parameter of its own:

- Freeze flags (``freeze_items=False``, ``freeze_contexts=True``). ``src/train.py`` lines
  68-69 default to ``--item_freeze 1 --user_freeze 0`` and lines 175-176 pass them to
  ``freeze_item_embs`` / ``freeze_user_embs``, which set ``requires_grad = flag``: the code
  *trains* the item vectors and freezes the user vectors at their mean-of-items
  initialisation (line 157) — the opposite of what the flags say. (``src/model.py``, which
  defines the two methods, was not in the copy of the code we could read, so that definition
  is cited from the side-by-side run that found it, not re-read.) By default we freeze
  items and learn contexts, as the text describes: cold items stay comparable to hot ones.
- Negatives (``negatives_from="contexts"``). In its item-sampling mode (the default,
  line 64) the dataset yields ``(item, user, count)`` rows (``src/dataset.py`` line 55);
  the training loop names them ``user, positive_item, confidence`` (``src/train.py``
  line 196), but its model calls ``model(positive_item, user)`` and
  ``model(negative_items, user)`` (lines 212-213) put the user index in the user slot and
  the item index in the item slot: the call is right, only the loop's names are swapped.
  Its "negative items" are ``np.random.randint(0, 17052, ...)`` (line 199), 17052 being the
  number of users: 20 random *users* per (item, user) row, each scored against the row's
  item. By default we sample negative *items* for each (context, item) pair, uniformly
  among the hot items (cold items never act as negatives), from a pool of `negative_pool`
  (256) hot items drawn afresh for every batch and projected once per batch; each draw is
  still uniform over the hot items.
- Batch size and budget (``batch_size=10000``, ``epochs=100``, ``min_steps=0``): line 66
  (batch 10,000 rows), line 67 (100 epochs), early stopping on the validation loss with
  patience 16 (line 181). With a research log of ~100k rows that is ten optimizer steps per
  epoch, and on a small log one: the code's net barely trains. By default training runs
  10 epochs of 1,024 pairs but at least 300 optimizer steps (`min_steps`), so a personal
  history of a few thousand plays gets enough updates. `mrs-tui eval` chooses the epoch on
  the validation contexts when there are enough of them (`Validation`); the app, without a
  validation split, keeps the fixed budget.
- Raw inputs (``standardize=False``): the code feeds the audio vectors as they are; by
  default we standardise them per dimension (`recommenders._torch.InputScaling`).
- Adam at its default lr 1e-3 (line 184) and the hinge margin 0.2 are the same in both.
- Skips (``learn_from_skips``, not in the paper, off with ``paper_compat``): a track skipped or
  disliked in a context is a hard negative of each of its positive pairs, one more hinge term
  ``max(0, margin − s(c, i⁺) + s(c, i_skip))`` weighted by ``skip_weight``.
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
    inner_products,
    load_module_weights,
    masked_mean,
    module_weights,
    sample_skips,
)
from recommenders.base import Interactions, InvalidParameter, ProgressCallback, Query, l2_normalize

NEGATIVE_SIDES = ("items", "contexts")


def hinge_loss(positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of ``max(0, margin − positive + negative)``; `positive` broadcasts over the negatives."""
    return torch.clamp(margin - positive + negative, min=0).mean()


class ShallowNet(nn.Module):
    def __init__(
        self,
        item_inputs: torch.Tensor,
        context_inputs: torch.Tensor,
        out_dim: int,
        freeze_items: bool,
        freeze_contexts: bool = False,
    ):
        super().__init__()
        in_dim = item_inputs.shape[1]
        self.items = nn.Embedding.from_pretrained(item_inputs.clone(), freeze=freeze_items)
        self.contexts = nn.Embedding.from_pretrained(context_inputs.clone(), freeze=freeze_contexts)
        self.project = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.items(items)), dim=-1)

    def embed_contexts(self, contexts: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.contexts(contexts)), dim=-1)


@dataclass(frozen=True)
class ShallowParams(LearnedParams):
    out_dim: int | None = None  # projection size; None: the audio dimension
    negatives: int = 20
    negative_pool: int = 256
    margin: float = 0.2
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 1e-3
    freeze_items: bool = True
    freeze_contexts: bool = False
    negatives_from: str = "items"  # "items": other items for the context; "contexts": other contexts for the item
    min_steps: int = 300

    def check(self, recommender: str) -> None:
        if self.negatives_from not in NEGATIVE_SIDES:
            raise InvalidParameter(
                f"negatives_from must be one of {', '.join(NEGATIVE_SIDES)}, not {self.negatives_from!r}",
                f"choose what the {recommender} recommender samples as negatives",
            )


class ShallowRecommender(LearnedRecommender):
    name = "shallow"
    Params = ShallowParams
    selects_by_validation = True
    quick_params = {"epochs": 15, "batch_size": 256, "min_steps": 0, "threads": 1}
    paper_params = {
        "paper_compat": True,
        "freeze_items": False,
        "freeze_contexts": True,
        "negatives_from": "contexts",
        "batch_size": 10_000,
        "epochs": 100,
        "min_steps": 0,
        "standardize": False,
        "learn_from_skips": False,
    }

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.net: ShallowNet | None = None
        self._refresh_cache()

    # -- training ------------------------------------------------------------------------------

    def _fit(
        self,
        interactions: Interactions,
        vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        pairs = interactions.matrix(binary=True).tocoo()
        contexts = torch.from_numpy(pairs.row.astype(np.int64))
        items = torch.from_numpy(pairs.col.astype(np.int64))
        hot_items = torch.from_numpy(np.flatnonzero(self.hot_mask))
        negative_pool = max(1, self.negative_pool)
        n_contexts = interactions.n_contexts

        generator, device = self.generator, self.train_device
        skips = self.skips
        out_dim = self.out_dim or vectors.shape[1]
        net = ShallowNet(
            torch.from_numpy(vectors),
            torch.from_numpy(self._initial_contexts(vectors)),
            out_dim,
            self.freeze_items,
            self.freeze_contexts,
        ).to(device)
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=self.lr)
        loop = self._epoch_loop(len(items), "shallow net", progress, cancel)

        def step(batch: torch.Tensor) -> float:
            context = net.embed_contexts(contexts[batch].to(device))
            item = net.embed_items(items[batch].to(device))
            positive = (context * item).sum(-1)
            if self.negatives_from == "contexts":
                # The code's negatives: random contexts (any, uniformly) scored against the positive item.
                drawn = torch.randint(n_contexts, (len(batch), self.negatives), generator=generator).to(device)
                negative = (net.embed_contexts(drawn) * item[:, None, :]).sum(-1)
            else:
                pool = hot_items[torch.randint(len(hot_items), (negative_pool,), generator=generator)]
                picks = torch.randint(negative_pool, (len(batch), self.negatives), generator=generator)
                negative = (context @ net.embed_items(pool.to(device)).T).gather(1, picks.to(device))
            loss = hinge_loss(positive[:, None], negative, self.margin)
            if skips is not None:
                # A track skipped in this context is a hard negative: it must score below the played one.
                picked, has = sample_skips(skips, contexts[batch], generator)
                hard = (context * net.embed_items(picked.to(device))).sum(-1)
                skip_hinge = torch.clamp(self.margin - positive + hard, min=0)
                loss = loss + self.skip_weight * masked_mean(skip_hinge, has.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        selection = CheckpointSelection(self, net)
        self.loss_history = loop.run(step, selection.after_epoch) if len(items) else []
        selection.finish()

    def _use_module(self, module: nn.Module) -> None:
        self.net = module
        self._refresh_cache()
        self._forget_item_side()

    def _initial_contexts(self, vectors: np.ndarray) -> np.ndarray:
        """Each context starts at the mean audio vector of its items (the paper's initialisation)."""
        out = np.zeros((len(self.sequences), vectors.shape[1]), np.float32)
        for c, seq in enumerate(self.sequences.sequences):
            if len(seq):
                out[c] = vectors[np.unique(seq)].mean(axis=0)
        return out

    # -- scoring -------------------------------------------------------------------------------

    def _refresh_cache(self) -> None:
        """The projection as numpy for queries, and the projected, normalised context vectors.

        Queries project one vector: numpy does that in microseconds, where a torch call costs
        more in dispatch (and, on a busy machine, in waking its thread pool) than in arithmetic.
        The projected items are the item side (`item_side`), computed on first use.
        """
        if self.net is None:
            self.context_embeddings = np.zeros((0, 0), np.float32)
            return
        linear = self.net.project[0]
        self._projection = linear.weight.detach().numpy().T.copy()
        self._bias = linear.bias.detach().numpy().copy()
        self.item_inputs = self.net.items.weight.detach().numpy()
        self.context_inputs = self.net.contexts.weight.detach().numpy()
        self.context_embeddings = self._project(self.context_inputs)

    @property
    def item_embeddings(self) -> np.ndarray:
        side = self.item_side()
        return side if side is not None else np.zeros((0, 0), np.float32)

    def _ready_to_serve(self) -> bool:
        return self.net is not None

    def _item_count(self) -> int:
        return len(self.item_inputs) if self.net is not None else 0

    def _compute_item_side(self) -> np.ndarray:
        return self._project(self.item_inputs)

    def query_side(self, query: Query) -> np.ndarray | None:
        return self.query_vector(query) if self.net is not None else None

    def _project(self, inputs: np.ndarray) -> np.ndarray:
        """``normalise(ReLU(x W + b))``, the net's projection, row-wise."""
        return l2_normalize(np.maximum(np.asarray(inputs, np.float32) @ self._projection + self._bias, 0.0))

    def query_vector(self, query: Query) -> np.ndarray | None:
        items = query.items()
        known = self.sequences.known(query.context)
        if not items and not known:
            return None
        if items and not known:
            return self._project(self.item_inputs[np.asarray(items)].mean(axis=0, keepdims=True))[0]
        if not items:
            return self.context_embeddings[query.context]
        mixed = 0.5 * (self.context_inputs[query.context] + self.item_inputs[np.asarray(items)].mean(axis=0))
        return self._project(mixed[None, :])[0]

    def score(self, query: Query) -> np.ndarray:
        vector = self.query_vector(query)
        if vector is None:
            return np.zeros(self.n_items, np.float32)
        return inner_products(self.item_embeddings, vector[None, :])[0]

    def score_batch(self, queries) -> np.ndarray:
        """All queries in one matrix product (evaluation asks thousands at a time)."""
        if self.net is None or not queries:
            return np.zeros((len(queries), self.n_items), np.float32)
        vectors = np.zeros((len(queries), self.item_embeddings.shape[1]), np.float32)
        for row, query in enumerate(queries):
            vector = self.query_vector(query)
            if vector is not None:
                vectors[row] = vector
        return inner_products(self.item_embeddings, vectors)

    # -- persistence and growth ------------------------------------------------------------------

    def _weights(self) -> dict[str, np.ndarray]:
        return {**module_weights(self.net), **self.scaling.to_arrays()} if self.net is not None else {}

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        self.scaling = InputScaling.from_arrays(arrays)
        arrays = {k: v for k, v in arrays.items() if not k.startswith("input_")}
        items = torch.from_numpy(np.array(arrays["items.weight"]))
        contexts = torch.from_numpy(np.array(arrays["contexts.weight"]))
        out_dim = arrays["project.0.weight"].shape[0]
        self.net = ShallowNet(items, contexts, out_dim, self.freeze_items, self.freeze_contexts)
        load_module_weights(self.net, arrays)
        self.net.eval()
        self._refresh_cache()
        self._forget_item_side()

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        if self.net is None:
            raise ValueError("the shallow recommender is not fitted yet")
        scaled = self.scaling(new_vectors)
        grown = torch.cat([self.net.items.weight.detach(), torch.from_numpy(scaled)])
        self.net.items = nn.Embedding.from_pretrained(grown, freeze=self.freeze_items)
        self._refresh_cache()
        self._grow_item_side(lambda: self._project(scaled))
