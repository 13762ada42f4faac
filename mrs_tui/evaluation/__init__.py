"""Offline evaluation (the paper's protocol) and training from the local history.

- `metrics`: HitRate / Recall / NDCG @K as `rs_metrics` defines them, mean ± 95 % t half-width;
- `splits`: the temporal split over users (research logs) or sessions (one listener);
- `datasets`: the local history, Music4All-style logs with `.npy` embeddings, external logs
  against the library, the paper's pre-made split folders;
- `runner`: the backends × recommenders grid with progress and cancel, stored in `eval_runs`;
- `training`: fit on the history, save, serve the newest model on today's catalogue.

Importing this package loads no submodule; none of them imports torch, faiss or Textual at
module level (recommenders import their own heavy libraries when they fit).
"""
