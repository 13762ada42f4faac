"""Offline evaluation (the paper's protocol).

- `metrics`: HitRate / Recall / NDCG @K as `rs_metrics` defines them, mean ± 95 % t half-width;
- `splits`: the temporal split over users (research logs) or sessions (one listener);
- `datasets`: the local history, Music4All-style logs with `.npy` embeddings, external logs
  against the library, the paper's pre-made split folders;
- `runner`: the backends × recommenders grid with progress and cancel, stored in `eval_runs`;
- `stats`: paired tests and intervals for comparing cells;
- `synthetic`: generated logs with planted structure, for tests and benchmarks.

Training the app's models on the history and serving them is `mrs_tui.training`.

Importing this package loads no submodule; none of them imports torch, faiss or Textual at
module level (recommenders import their own heavy libraries when they fit).
"""
