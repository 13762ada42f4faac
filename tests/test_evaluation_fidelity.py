"""What the evaluation table says about its own numbers: degenerate K, cells without cold scores,
the checkpoint rule, seeds and their spread, paired tests, the paper-compatible rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrs_tui.errors import UserError
from mrs_tui.evaluation import synthetic
from mrs_tui.evaluation.datasets import Dataset, VectorSource
from mrs_tui.evaluation.runner import VALIDATION_MIN_CONTEXTS, EvalSettings, resolve_rows, run_grid


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(n_users=40, n_items=240, n_plays=4000, seed=11)


def dataset_of(data, names=("good",)) -> Dataset:
    sources = {n: VectorSource(n, data.item_keys, lambda m=data.vectors[n]: m) for n in names}
    return Dataset("generated", "log", data.log, sources, default_contexts="users")


@pytest.fixture(scope="module")
def knn_run(data):
    return run_grid(dataset_of(data, ("good", "poor")), EvalSettings(ks=(10, 1000), recommenders=["knn"], quick=True))


def test_k_at_least_the_candidates_is_flagged_uninformative_in_table_and_json(knn_run):
    run = knn_run
    candidates = run.split["candidates"]
    assert candidates["cold"] == run.split["cold_items"] < 1000
    flagged = {(u["part"], u["k"]) for u in run.to_dict()["uninformative"]}
    assert ("cold", 1000) in flagged and ("hot", 1000) in flagged
    assert ("cold", 10) not in flagged and ("hot", 10) not in flagged
    entry = next(u for u in run.to_dict()["uninformative"] if u["part"] == "cold")
    assert entry["metrics"] == ["HitRate@1000", "Recall@1000"] and entry["note"] == "K ≥ candidates: uninformative"
    # Every model, random included, has HitRate 1 there: the table prints the flag, not the ones.
    assert run.cell("-", "random").parts["cold"]["HitRate@1000"].mean == 1.0
    table = run.table()
    assert "uninformative" in table and f"K = 1000 ≥ {candidates['cold']} candidates" in table
    json.dumps(run.to_dict())


def test_models_without_cold_scores_get_no_cold_cell_and_the_table_says_so(knn_run):
    for name in ("elsa", "popular"):
        cell = knn_run.cell("-", name)
        assert "cold" not in cell.parts and "hot" in cell.parts and not cell.scores_cold_items
    cold_section = knn_run.table().split("COLD")[1]
    assert "elsa" in cold_section and "no cold scores" in cold_section
    assert "cold" in knn_run.cell("-", "random").parts


def test_a_small_validation_part_keeps_the_fixed_budget_and_warns(data):
    run = run_grid(dataset_of(data), EvalSettings(recommenders=["shallow"], quick=True))
    assert run.split["val_contexts"] < VALIDATION_MIN_CONTEXTS
    assert not run.settings["validation_selection"]
    assert "too few to select a checkpoint" in run.table()
    shallow = run.cell("good", "shallow")
    assert shallow.selection[0]["rule"] == "fixed budget"
    assert "checkpoint: fixed budget" in run.table()


def test_validation_selection_and_seeds_report_rule_mean_and_spread(data):
    settings = EvalSettings(recommenders=["shallow"], quick=True, seeds=(0, 1, 2), selection="validation")
    run = run_grid(dataset_of(data), settings)
    cell = run.cell("good", "shallow")
    assert cell.seeds == [0, 1, 2] and [s["seed"] for s in cell.selection] == [0, 1, 2]
    assert all(s["rule"] == "validation" and s["metric"] == "NDCG@50" for s in cell.selection)
    spread = cell.seed_spread["hot"]["NDCG@50"]
    assert len(spread["means"]) == 3 and spread["sd"] == pytest.approx(np.std(spread["means"], ddof=1))
    # The cell's mean is the mean over seeds; its CI is over the (seed-averaged) contexts.
    assert cell.parts["hot"]["NDCG@50"].mean == pytest.approx(np.mean(spread["means"]))
    assert cell.parts["hot"]["NDCG@50"].n == run.split["hot_test_contexts"]
    assert run.cell("-", "random").seeds == [0]  # nothing random to learn: one run
    table = run.table()
    assert "over seeds" in table and "(3 seeds)" in table and "checkpoint by validation: epoch" in table
    stored = type(run).from_dict(json.loads(json.dumps(run.to_dict())))
    assert stored.cell("good", "shallow").seed_spread == cell.seed_spread

    def reported(text):  # what a stored run prints again: the spread and checkpoint lines
        return [line for line in text.splitlines() if "over seeds" in line or "checkpoint" in line]

    assert reported(stored.table()) == reported(table)


def test_paired_test_between_two_cells_over_the_same_contexts(knn_run):
    result, sentence = knn_run.paired(("good", "knn"), ("poor", "knn"))
    assert result.n == knn_run.split["hot_test_contexts"]
    good, poor = (knn_run.cell(b, "knn").values["hot"]["NDCG@1000"] for b in ("good", "poor"))
    assert result.mean_diff == pytest.approx(float(np.mean(good - poor)))
    assert sentence.startswith("hot NDCG@1000: ") and "knn on good" in sentence
    with pytest.raises(UserError, match="no cell good:nope"):
        knn_run.paired(("good", "knn"), ("good", "nope"))


def test_paper_rows_and_the_codes_cold_k(data):
    labels = [(r.label, r.recommender, r.params) for r in resolve_rows(["shallow", "shallow+paper"])]
    assert ("shallow+paper", "shallow", {"paper_compat": True}) in labels and ("shallow", "shallow", {}) in labels
    assert all(r.params.get("paper_compat") for r in resolve_rows(["knn"], paper_compat=True))
    run = run_grid(dataset_of(data), EvalSettings(ks=(10,), recommenders=["knn"], paper_compat=True, quick=True))
    assert set(run.cell("good", "knn").parts["cold"]) == {"HitRate@50", "Recall@50", "NDCG@50"}
    assert set(run.cell("good", "knn").parts["hot"]) == {"HitRate@10", "Recall@10", "NDCG@10"}
    table = run.table()
    assert "the numbers the paper's code labels @20" in table and "--paper-compat" in table


def test_command_line_seeds_paper_rows_and_paired_cells(tmp_path, capsys, data):
    from mrs_tui.cli import main
    from tests.test_evaluation_datasets import write_research_files

    log, ids, (good, poor) = write_research_files(tmp_path / "log", data)
    base = ["--db", tmp_path / "x.db", "eval", "--log", log, "--embeddings", good, "--embeddings", poor]
    base += ["--track-ids", ids, "--no-store", "--quick"]
    argv = [*base, "--recommenders", "knn,shallow+paper", "--seeds", "0,1", "--paired", "good:knn,poor:knn", "--json"]
    assert main([str(a) for a in argv]) == 0
    result = json.loads(capsys.readouterr().out)
    paper = next(c for c in result["cells"] if c["recommender"] == "shallow+paper" and c["backend"] == "good")
    assert paper["seeds"] == [0, 1] and "NDCG@50" in paper["seed_spread"]["hot"]
    (paired,) = result["paired"]
    assert paired["a"] == ["good", "knn"] and paired["n"] == result["split"]["hot_test_contexts"]
    assert "knn on good" in paired["verdict"]
    assert main([str(a) for a in [*base, "--seeds", "0,x"]]) == 2
    assert "--seeds takes whole numbers" in capsys.readouterr().err
    assert main([str(a) for a in [*base, "--paired", "good:knn"]]) == 2
    assert "--paired takes two cells" in capsys.readouterr().err
