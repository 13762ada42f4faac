"""How many validation contexts does checkpoint selection need? The figure behind
`mrs_tui.evaluation.runner.VALIDATION_MIN_CONTEXTS`.

One generated research log (users as contexts, planted clusters, a deliberately noisy
``poor`` backend so that training overfits after a while). A learned model trains epoch by
epoch; after every epoch all validation users are ranked, which gives each epoch's
per-user NDCG@50. Then, for validation parts of n users (drawn many times from the full
part), the epoch with the best mean over those n is "chosen", and its NDCG over the *full*
validation part is compared with that of the fixed budget (the last epoch) and with the
best epoch. Below some n, the choice follows noise and is no better than the fixed budget.

    .venv/bin/python bench/bench_selection.py [--users 600] [--recommender shallow] [--epochs 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--plays", type=int, default=40_000)
    parser.add_argument("--recommender", default="shallow")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import recommenders
    from mrs_tui.evaluation import synthetic
    from mrs_tui.evaluation.datasets import Dataset, VectorSource
    from mrs_tui.evaluation.runner import EvalSettings, evaluate_cases, prepare_split
    from recommenders.base import Validation

    data = synthetic.generate(
        n_users=args.users, n_items=args.items, n_plays=args.plays, backends={"poor": (32, 1.5)}, seed=5
    )
    sources = {"poor": VectorSource("poor", data.item_keys, lambda: data.vectors["poor"])}
    dataset = Dataset("generated", "log", data.log, sources, default_contexts="users")
    settings = EvalSettings(val_share=0.5)
    split = prepare_split(dataset, settings, ["poor"])
    vectors = sources["poor"].rows(split.item_keys)
    per_epoch: list[np.ndarray] = []

    def record(model) -> float:
        rows = evaluate_cases(model, split.val, "hot", [50])
        values = np.array([r["NDCG@50"] for r in rows])
        per_epoch.append(values)
        return float(values.mean())

    cls = recommenders.recommender_class(args.recommender)
    params = {**cls.quick_params, "epochs": args.epochs}
    started = time.perf_counter()
    model = recommenders.create(args.recommender, **params)
    model.fit(split.train, vectors, validation=Validation(record, "NDCG@50", patience=args.epochs))
    seconds = time.perf_counter() - started
    values = np.stack(per_epoch)  # epochs x validation users
    full = values.mean(axis=1)
    n_val = values.shape[1]
    print(
        f"{args.recommender}: {len(split.train)} train pairs, {n_val} validation users, {len(full)} epochs "
        f"({seconds:.1f} s with per-epoch validation)"
    )
    print("full-part NDCG@50 by epoch: " + " ".join(f"{v:.3f}" for v in full))
    print(f"best epoch {int(full.argmax()) + 1} ({full.max():.4f}); fixed budget, the last epoch: {full[-1]:.4f}")
    rng = np.random.default_rng(0)
    print(f"{'n users':>8s}{'chosen (full NDCG)':>20s}{'vs fixed':>10s}{'vs best':>10s}{'sd of a mean':>14s}")
    for n in (5, 10, 25, 50, 100, 200, 400):
        if n > n_val:
            break
        chosen = []
        for _ in range(args.draws):
            pick = rng.choice(n_val, n, replace=False)
            chosen.append(full[int(values[:, pick].mean(axis=1).argmax())])
        chosen = np.array(chosen)
        noise = float(values[int(full.argmax())].std(ddof=1) / np.sqrt(n))
        print(
            f"{n:8d}{chosen.mean():20.4f}{chosen.mean() - full[-1]:+10.4f}{chosen.mean() - full.max():+10.4f}"
            f"{noise:14.4f}"
        )


if __name__ == "__main__":
    main()
