"""The evaluation grid on a Ray cluster: each (backend, recommender) cell is one task.

`run_grid(dataset, settings, cells=RayCells(options))` prepares the split here, exactly as a
local run does, puts the split and each backend's matrix in the object store once, and runs
`evaluate_cell` (the local runner's own per-cell function) as a task per cell, with the same
seeds. A cell whose worker is lost is retried; one that still fails is reported in its row and
the others complete. Cancel stops the cells still running and keeps the finished ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mrs_tui.cluster import ClusterOptions, connect, describe_error
from mrs_tui.evaluation.datasets import Dataset
from mrs_tui.evaluation.runner import CellResult, EvalSettings, Row, cell_name, evaluate_cell, failed_cell
from mrs_tui.evaluation.splits import Split

RETRIES = 3
CELL_CPUS = 1  # a cell fits and ranks on one core; more cells at once is the speed-up


def _run_cell(backend: str, row: Row, split: Split, vectors, settings: EvalSettings) -> CellResult:
    cell = evaluate_cell(backend, row, split, vectors, settings)
    cell.values = {}  # per-context arrays stay on the worker: the table needs only the summaries
    return cell


class RayCells:
    """A `run_grid(cells=...)` executor that runs the grid's cells as Ray tasks."""

    def __init__(self, options: ClusterOptions, *, keep_values: bool = False) -> None:
        self.options = options
        self.keep_values = keep_values  # bring the per-context metric arrays back (paired tests)

    def __call__(
        self,
        dataset: Dataset,
        split: Split,
        plan: list[tuple[str, Row]],
        settings: EvalSettings,
        report: Callable[[float, str], None],
        cancel: threading.Event | None,
    ) -> tuple[list[CellResult], bool]:
        with connect(self.options) as ray:
            return self._run(ray, dataset, split, plan, settings, report, cancel)

    def _run(self, ray: Any, dataset, split, plan, settings, report, cancel) -> tuple[list[CellResult], bool]:
        task = ray.remote(num_cpus=CELL_CPUS, max_retries=RETRIES)(evaluate_cell if self.keep_values else _run_cell)
        split_ref = ray.put(split)
        matrices: dict[str, Any] = {}
        results: list[CellResult | None] = [None] * len(plan)
        pending: dict[Any, int] = {}
        for index, (backend, row) in enumerate(plan):
            if backend not in matrices:
                try:
                    matrices[backend] = ray.put(dataset.sources[backend].rows(split.item_keys))
                except Exception as exc:  # this backend's vectors could not be read: its cells fail
                    matrices[backend] = exc
            if isinstance(matrices[backend], Exception):
                results[index] = failed_cell(backend, row, str(matrices[backend]))
                continue
            ref = task.options(name=cell_name(backend, row)).remote(
                backend, row, split_ref, matrices[backend], settings
            )
            pending[ref] = index
        done = sum(r is not None for r in results)
        report(done, f"{len(pending)} cells sent to the cluster")
        cancelled = False
        while pending:
            if cancel is not None and cancel.is_set():
                cancelled = True
                for ref in pending:
                    ray.cancel(ref, force=True)
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            for ref in ready:
                index = pending.pop(ref)
                backend, row = plan[index]
                try:
                    results[index] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    results[index] = failed_cell(backend, row, f"lost on the cluster: {describe_error(exc)}")
                done += 1
                report(done, f"done {cell_name(backend, row)}")
        return [r for r in results if r is not None], cancelled
