"""BERT4Rec over listening sequences, with item embeddings that come from audio.

A bidirectional transformer encoder (2 layers, 2 heads by default) reads a context's items
in time order; during training a fraction of the positions (`mask_prob`, 0.2) is replaced by
a learned ``[MASK]`` vector and the model predicts the hidden item at each of them (cloze
task, cross-entropy). The item input embeddings are the audio vectors through one learned
projection ``Linear(audio_dim, hidden)``, and the output head scores every item by the inner
product of the transformed hidden state with *the same* audio-derived embeddings. No item has
a free embedding of its own, so cold items — and items appended after training through
`extend_items` — are scored exactly like hot ones.

Predicting: the query's sequence (the training context's items when the query names a known
context, then its own history and seed) is cut to its last ``max_len − 1`` items and a
``[MASK]`` is appended *at the end* — the next item is what is asked for — and the output at
that position ranks the full catalogue (the RecBole pitfalls: no mask elsewhere, no sampled
candidate lists).

Where the paper's code and text disagree, or where we chose. ``paper_compat=True`` reproduces
the code (``Darel13712/adopting-pretrained-audio``, ``src/train_bert.py``) where it differs;
each switch is a parameter of its own:

- The item table (``audio_item_table=True``): the code uses the audio vectors themselves as
  the input embedding table, so the hidden size is the audio dimension (line 264; 200 for
  MusiCNN), with the ``[MASK]`` and padding rows drawn from N(0, 0.02) (line 282), and passes
  ``--item_freeze 1`` (line 220, line 323), which trains every row of it (the same inverted
  flag as the shallow net; the class, ``src/bert4rec.py``, was not in the copy of the code we
  could read, so its head and tying are not re-checked here). Cold items' rows are then only
  ever pushed down as negatives of the full softmax. By default the item embeddings are one
  learned projection ``Linear(audio_dim, hidden)`` of the audio, which keeps every item —
  cold or added after training — scored exactly like a hot one. Ours: a dense + GELU +
  LayerNorm transform precedes the output layer, which is tied to the input embeddings
  (the original BERT4Rec's head; whether the code's ``add_head=True`` head matches it is
  among what could not be re-read).
- Cold negatives (``cold_negatives=True``): the code's vocabulary is every item of the split,
  cold ones included (``item_count``, line 293), so its softmax pushes the held-out catalogue
  down (see `recommenders.elsa`); by default the training softmax spans the hot items and
  prediction the full catalogue.
- The HF-BERT configuration (``dropout=0.1``, ``lr=1e-3``, ``max_len=300``): the code's
  ``bert_config`` (lines 312-319: 2 layers, 2 heads, intermediate size 256) leaves BERT's
  dropout at its default 0.1, uses Adam at its default lr 1e-3 (line 333) and keeps 300 items
  (line 217), batches of 128 sequences (line 301), up to 200 epochs (line 219) with early
  stopping on the validation loss. By default: hidden 64, feed-forward 256, ``max_len`` 100,
  10 epochs of 128 windows but at least 160 optimizer steps (`min_steps`); with that short
  budget, Adam at lr 3e-3 and no dropout ranked clearly better on our planted benchmark at
  both scales (research HitRate@50 0.97 against 0.89; personal 0.83 against 0.53) and
  dropout's masks cost a fifth of the CPU time. `mrs-tui eval` chooses the epoch on the
  validation contexts when there are enough of them; the app keeps the fixed budget.
- The last window only (``last_window_only=True``): the code keeps each user's last
  ``max_len`` items (line 80); by default we cut longer sequences into consecutive windows of
  ``max_len`` (from the end), so long research histories are used in full. At least one
  position per window is masked in both.
- Raw inputs (``standardize=False``): the code feeds the audio vectors as they are; by
  default we standardise them per dimension (`recommenders._torch.InputScaling`).
- Skips (``learn_from_skips``, not in the paper): at each masked position a track skipped in
  the window's context must score below the hidden one, ``softplus(s_skip − s_target)``. Off
  by default: on a planted one-listener history (tests/test_recommenders_skips.py) it moved
  the skipped style's mean rank by less than the spread between seeds (0.45-0.69 without,
  0.51-0.66 with), unlike the shallow, contrastive and hybrid models.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recommenders._torch import (
    SINGLE_THREAD_QUERIES,
    CheckpointSelection,
    EpochLoop,  # noqa: F401 - the loop `_epoch_loop` builds, named here for callers that hook into it
    InputScaling,
    LearnedParams,
    LearnedRecommender,
    intra_op_threads,
    load_module_weights,
    masked_mean,
    module_weights,
    sample_skips,
)
from recommenders.base import Interactions, InvalidParameter, ProgressCallback, Query


class Bert4RecNet(nn.Module):
    def __init__(
        self,
        audio_dim: int,
        hidden: int,
        layers: int,
        heads: int,
        feedforward: int,
        max_len: int,
        dropout: float,
        item_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        # Item embeddings: a projection of the audio vectors (default), or — the paper's code —
        # a free table initialised with them (hidden size = audio dimension).
        self.item_projection = nn.Linear(audio_dim, hidden) if item_table is None else None
        self.item_table = None if item_table is None else nn.Parameter(item_table.clone())
        self.mask_embedding = nn.Parameter(torch.randn(hidden) * 0.02)
        self.positions = nn.Embedding(max_len, hidden)
        self.input_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, feedforward, dropout, activation="gelu", batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        # BERT's prediction transform before the (tied, audio-derived) output embeddings.
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))

    def item_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        if self.item_table is None:
            return self.item_projection(audio)
        known = len(self.item_table)
        if len(audio) <= known:
            return self.item_table[: len(audio)]
        return torch.cat([self.item_table, audio[known:]])  # items added after training: their audio

    def encode(self, tokens: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Hidden states (B × L × hidden) for `tokens` over a vocabulary of `items` embeddings.

        Token ids: ``0..n-1`` items, ``n`` the mask, ``n + 1`` padding.
        """
        n = len(items)
        table = torch.cat([items, self.mask_embedding[None, :], torch.zeros_like(self.mask_embedding)[None, :]])
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.input_norm(table[tokens] + self.positions(positions)[None, :, :]))
        return self.encoder(x, src_key_padding_mask=tokens == n + 1)

    def logits(self, hidden_states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.head(hidden_states) @ items.T


def windows(sequences: list[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Consecutive windows of at most `max_len` items, cut from the end of each sequence."""
    return [w for w, _ in context_windows(sequences, max_len)]


def context_windows(sequences: list[np.ndarray], max_len: int) -> list[tuple[np.ndarray, int]]:
    """`windows`, each with the index of the context it was cut from."""
    out = []
    for context, seq in enumerate(sequences):
        for end in range(len(seq), 0, -max_len):
            out.append((seq[max(0, end - max_len) : end], context))
    return out


def prediction_tokens(items: list[int], max_len: int, mask_token: int) -> np.ndarray:
    """The most recent ``max_len − 1`` items followed by ``[MASK]``: "what comes next?"."""
    recent = list(items)[-(max_len - 1) :] if max_len > 1 else []
    return np.asarray([*recent, mask_token], dtype=np.int64)


@dataclass(frozen=True)
class Bert4RecParams(LearnedParams):
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    feedforward: int = 256
    max_len: int = 100
    dropout: float = 0.0
    mask_prob: float = 0.2
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    min_steps: int = 160
    audio_item_table: bool = False  # a trainable item table initialised from the audio (the code); hidden = audio dim
    cold_negatives: bool = False  # the training softmax spans every item, cold ones included (the code)
    last_window_only: bool = False  # train on each context's last `max_len` items only (the code)
    # Off by default: on a planted history whose listener skips one style, the pairwise skip term
    # moved that style's rank by less than the spread between seeds, either way (see the module docstring).
    learn_from_skips: bool = False

    def check(self, recommender: str) -> None:
        if self.hidden % self.heads:
            raise InvalidParameter(
                f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})",
                f"change hidden or heads of the {recommender} recommender",
            )
        if self.max_len < 2:
            raise InvalidParameter("max_len must be at least 2 (one item and the mask)", "give max_len >= 2")


class Bert4RecRecommender(LearnedRecommender):
    name = "bert4rec"
    Params = Bert4RecParams
    selects_by_validation = True
    # Its query side (a transformer's output) lies off its item rows: through an HNSW graph,
    # recall@20 was 0.91 at the graph's usual walk depth on a trained 100k-track model, against
    # 0.99+ for the other models. Its item side is narrow (64 values by default, 32 in the quick
    # settings), so a flat pass stays cheap: 15 ms p95 over a million items of 32 values.
    item_graph = False
    quick_params = {"epochs": 40, "batch_size": 64, "hidden": 32, "max_len": 20, "min_steps": 0, "threads": 1}
    paper_params = {
        "paper_compat": True,
        "audio_item_table": True,
        "cold_negatives": True,
        "last_window_only": True,
        "dropout": 0.1,
        "lr": 1e-3,
        "max_len": 300,
        "epochs": 200,
        "batch_size": 128,
        "min_steps": 0,
        "standardize": False,
        "learn_from_skips": False,
    }

    def __init__(self, *, seed: int = 0, **params: object) -> None:
        super().__init__(seed=seed, **params)
        self.net: Bert4RecNet | None = None
        self.audio = np.zeros((0, 0), np.float32)

    def _new_net(self, audio_dim: int, item_table: torch.Tensor | None = None) -> Bert4RecNet:
        hidden = self.hidden if item_table is None else item_table.shape[1]
        if hidden % self.heads:
            raise InvalidParameter(
                f"the item table has {hidden} dimensions, not a multiple of heads ({self.heads})",
                "choose heads that divide the audio dimension, or audio_item_table=False",
            )
        return Bert4RecNet(
            audio_dim, hidden, self.layers, self.heads, self.feedforward, self.max_len, self.dropout, item_table
        )

    # -- training ------------------------------------------------------------------------------

    def _fit(
        self,
        interactions: Interactions,
        vectors: np.ndarray,
        *,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.audio = vectors
        # The softmax vocabulary: the hot items, or every item (the code's cold negatives).
        vocab = np.arange(self.n_items) if self.cold_negatives else np.flatnonzero(self.hot_mask)
        to_vocab = np.full(self.n_items, -1, np.int64)
        to_vocab[vocab] = np.arange(len(vocab))
        if self.last_window_only:
            cut = [(seq[-self.max_len :], c) for c, seq in enumerate(self.sequences.sequences)]
        else:
            cut = context_windows(self.sequences.sequences, self.max_len)
        cut = [(w, c) for w, c in cut if len(w)]
        examples = [to_vocab[w] for w, _ in cut]
        example_contexts = torch.tensor([c for _, c in cut], dtype=torch.long)
        mask_token, pad_token = len(vocab), len(vocab) + 1
        skips = self.skips

        generator, device = self.generator, self.train_device
        table = torch.from_numpy(self.audio) if self.audio_item_table else None
        net = self._new_net(self.audio.shape[1], table).to(device)
        net.train()
        audio_all = torch.from_numpy(self.audio).to(device)
        vocab_index = torch.from_numpy(vocab).to(device)
        vocab_audio = audio_all[vocab_index]
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
        loop = self._epoch_loop(len(examples), "BERT4Rec", progress, cancel)

        def step(batch: torch.Tensor) -> float:
            tokens, targets = self._masked_batch(
                [examples[i] for i in batch.tolist()], mask_token, pad_token, generator
            )
            tokens, targets = tokens.to(device), targets.to(device)
            if net.item_table is None:
                items = net.item_embeddings(vocab_audio)
            else:
                items = net.item_embeddings(audio_all)[vocab_index]
            states = net.encode(tokens, items)
            masked = targets >= 0
            logits = net.logits(states[masked], items)
            loss = F.cross_entropy(logits, targets[masked])
            if skips is not None:
                # Negative targets: at each masked position, a track skipped in the window's
                # context must score below the hidden one (a pairwise term, as BPR).
                picked, has = sample_skips(skips, example_contexts[batch], generator)
                if net.item_table is None:
                    skipped = net.item_projection(audio_all[picked.to(device)])
                else:
                    skipped = net.item_table[picked.to(device)]
                rows = masked.nonzero()[:, 0]
                skip_logit = (net.head(states[masked]) * skipped[rows]).sum(-1)
                target_logit = logits.gather(1, targets[masked][:, None])[:, 0]
                pairwise = F.softplus(skip_logit - target_logit)
                loss = loss + self.skip_weight * masked_mean(pairwise, has.to(device)[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        selection = CheckpointSelection(self, net)
        self.loss_history = loop.run(step, selection.after_epoch)
        selection.finish()

    def _use_module(self, module: nn.Module) -> None:
        self.net = module
        self._refresh_embeddings()

    def _masked_batch(
        self, sequences: list[np.ndarray], mask_token: int, pad_token: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded token ids with masked positions, and the targets (-1 where nothing is asked)."""
        length = max(len(s) for s in sequences)
        tokens = torch.full((len(sequences), length), pad_token, dtype=torch.long)
        for row, seq in enumerate(sequences):
            tokens[row, : len(seq)] = torch.from_numpy(seq)
        real = tokens != pad_token
        masked = (torch.rand(tokens.shape, generator=generator) < self.mask_prob) & real
        # A window with no masked position teaches nothing: mask one of its items at random.
        lengths = real.sum(1)
        empty = ~masked.any(1)
        if empty.any():
            picks = (torch.rand(int(empty.sum()), generator=generator) * lengths[empty]).long()
            masked[empty.nonzero().squeeze(1), picks] = True
        targets = torch.where(masked, tokens, torch.full_like(tokens, -1))
        tokens = torch.where(masked, torch.full_like(tokens, mask_token), tokens)
        return tokens, targets

    # -- scoring -------------------------------------------------------------------------------

    def _refresh_embeddings(self) -> None:
        self._forget_item_side()

    @property
    def embeddings(self) -> torch.Tensor | None:
        """The item side as a tensor (shares memory with `item_side`): input table and output layer."""
        side = self.item_side()
        return None if side is None else torch.from_numpy(side)

    def _ready_to_serve(self) -> bool:
        return self.net is not None

    def _item_count(self) -> int:
        return len(self.audio)

    def _compute_item_side(self) -> np.ndarray:
        return self._embeddings_of(self.audio, start=0)

    def _embeddings_of(self, audio: np.ndarray, start: int) -> np.ndarray:
        with torch.inference_mode():
            if self.net.item_table is None:
                return self.net.item_projection(torch.from_numpy(np.ascontiguousarray(audio, np.float32))).numpy()
            full = self.net.item_embeddings(torch.from_numpy(self.audio))
            return full[start : start + len(audio)].numpy().copy()

    def query_side(self, query: Query) -> np.ndarray | None:
        """The transformed state at the appended ``[MASK]``: its inner products are the logits."""
        if self.net is None:
            return None
        return self._states([query])[0]

    def score(self, query: Query) -> np.ndarray:
        if self.net is None:
            return np.zeros(self.n_items, np.float32)
        return self.score_batch([query])[0]

    def _states(self, queries) -> np.ndarray:
        """``head(state at the [MASK])`` per query (Q × hidden)."""
        embeddings = self.embeddings
        tokens, last = self._query_tokens(queries)
        threads = 1 if len(queries) <= SINGLE_THREAD_QUERIES else self.threads
        with torch.inference_mode(), intra_op_threads(threads):
            states = self.net.encode(tokens, embeddings)
            return self.net.head(states[torch.arange(len(queries)), last]).numpy()

    def _query_tokens(self, queries):
        """Each query's items as prediction tokens, padded into one batch, and where each one ends."""
        n = len(self.embeddings)
        rows = [prediction_tokens(self.sequences.query_items(q), self.max_len, n) for q in queries]
        length = max(len(r) for r in rows)
        tokens = torch.full((len(rows), length), n + 1, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.from_numpy(r)
        return tokens, torch.tensor([len(r) - 1 for r in rows])

    def score_batch(self, queries) -> np.ndarray:
        if self.net is None or not queries:
            return np.zeros((len(queries), self.n_items), np.float32)
        tokens, last = self._query_tokens(queries)
        # One query is a few small matrix products: a second thread only adds hand-off latency
        # (p95 over 100 ms on a busy 2-core machine against under 1 ms with one thread).
        threads = 1 if len(queries) <= SINGLE_THREAD_QUERIES else self.threads
        with torch.inference_mode(), intra_op_threads(threads):
            states = self.net.encode(tokens, self.embeddings)
            scores = self.net.logits(states[torch.arange(len(queries)), last], self.embeddings)
        return scores.numpy().astype(np.float32, copy=False)

    # -- persistence and growth ------------------------------------------------------------------

    def _weights(self) -> dict[str, np.ndarray]:
        if self.net is None:
            return {}
        return {**module_weights(self.net, "net."), "audio": self.audio, **self.scaling.to_arrays()}

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        self.audio = np.array(arrays["audio"], dtype=np.float32)
        self.scaling = InputScaling.from_arrays(arrays)
        table = arrays.get("net.item_table")
        self.net = self._new_net(self.audio.shape[1], None if table is None else torch.from_numpy(np.array(table)))
        load_module_weights(self.net, {k: v for k, v in arrays.items() if k.startswith("net.")}, "net.")
        self.net.eval()
        self._refresh_embeddings()

    def _extend_items(self, new_vectors: np.ndarray) -> None:
        if self.net is None:
            raise ValueError("the bert4rec recommender is not fitted yet")
        new_vectors = self.scaling(new_vectors)
        start = len(self.audio)
        self.audio = np.ascontiguousarray(np.concatenate([self.audio, new_vectors]), dtype=np.float32)
        self._grow_item_side(lambda: self._embeddings_of(new_vectors, start=start))
