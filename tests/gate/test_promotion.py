"""The promotion gate on a real (temporary) MLflow store: registration tags and
descriptions (the gate, each version's verdict report), the alias moving only on a pass, and results of
mismatched problem sets refused."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from components.model.factory import initial_policy
from components.gate.descriptions import DESCRIPTION_LIMIT, fit_description
from components.gate.promotion import Matchup, gate_metrics, pooled_scores, verify_and_promote
from components.gate.statistics import compare
from components.infra.provenance import hash_path
from tests.support.promotion import workspace, write_eval  # noqa: F401  (a fixture, and its eval results)


@pytest.mark.slow
def test_a_clear_gain_is_registered_and_promoted(workspace):
    root, cfg = workspace
    write_eval(root, "sft", [i % 2 == 0 for i in range(200)])  # 0.50
    write_eval(root, "rl", [i % 5 != 0 for i in range(200)])  # 0.80
    summary = verify_and_promote(cfg)
    assert summary["promoted"] and summary["rl_vs_sft"]["ci_low"] > 0
    client = MlflowClient()
    version = client.get_model_version_by_alias("pipo-policy", "champion")
    assert str(version.version) == "1"
    assert version.tags["verdict"] == "passed" and version.tags["algorithm"] == "grpo"
    assert version.tags["pipo.enabled"] == "true" and "git_commit" in version.tags
    assert version.tags["parent_run_id"] == "none"
    assert version.tags["model_hash"] == hash_path(root / cfg.rl.out_dir)
    assert version.tags["promotion"] == "promoted to @champion"
    assert json.loads((root / "metrics" / "verify.json").read_text())["registered_version"] == 1
    assert "rl vs sft" in (root / "reports" / "verify" / "report.md").read_text()
    # the DVC metrics file (a `dvc exp show` column each) holds the numbers compared across runs; the
    # whole verdict (what was scored, which weights) is in the stage's report folder
    assert json.loads((root / "metrics" / "verify.json").read_text()) == {
        "promoted": True, "registered_version": 1,
        "rl_vs_sft": {k: summary["rl_vs_sft"][k] for k in ("diff", "ci_low", "ci_high", "mcnemar_p", "passed")}}
    assert json.loads((root / "reports" / "verify" / "verdict.json").read_text()) == summary
    assert {"model_hash", "score", "num_problems", "reused_version"} <= set(summary)


def test_no_gain_is_registered_but_not_promoted(workspace):
    root, cfg = workspace
    same = [i % 3 == 0 for i in range(150)]
    write_eval(root, "sft", same)
    write_eval(root, "rl", same)
    summary = verify_and_promote(cfg)
    assert not summary["promoted"]
    client = MlflowClient()
    [version] = client.search_model_versions("name = 'pipo-policy'")
    assert version.tags["verdict"] == "failed" and "not promoted" in version.tags["promotion"]
    assert "min_gain" in version.tags["verdict_reason"]
    assert version.aliases == []


def test_the_model_says_how_versions_are_gated_and_each_version_why(workspace):
    """Descriptions, one click from the model in the UI: the gate (model) and the verdict report (version)."""
    root, cfg = workspace
    write_eval(root, "sft", [i % 3 == 0 for i in range(150)])
    write_eval(root, "rl", [i % 3 == 0 for i in range(150)])
    verify_and_promote(cfg)
    client = MlflowClient()
    model = client.get_registered_model("pipo-policy").description
    assert "**How they are gated.**" in model and "paired bootstrap" in model and "@champion" in model
    version = client.get_model_version("pipo-policy", "1")
    report = version.description
    assert report.startswith("**pipo-policy v1: not promoted (no @champion set)**")
    assert "| rl vs sft | 150 | 0.333 | 0.333 | +0.000 | 95% [" in report and "McNemar p" in report
    assert f"the model RL started from: sft (sha256 `{version.tags['sft_model_hash']}`)" in report
    assert "**Champion**: none (no `@champion` yet)" in report
    assert f"`{version.tags['data_version']}`" in report and f"git `{version.tags['git_commit']}`" in report
    assert f"`data/prepared/eval.parquet` sha256 `{hash_path(root / 'data/prepared/eval.parquet')}`" in report
    assert (root / "reports" / "verify" / "report.md").read_text() == report
    # the verify run lists the benchmark it judged on, as the evaluate run does
    [run] = client.search_runs([client.get_experiment_by_name("pipo").experiment_id])
    assert run.info.run_name.startswith("verify · grpo+pipo · cfg-")
    assert [(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs] == \
        [("chain_sum", hashlib.md5((root / "data/prepared/eval.parquet").read_bytes()).hexdigest())]


@pytest.mark.slow
def test_a_version_compared_with_the_champion_names_it(workspace, monkeypatch):
    from components.gate import promotion

    root, cfg = workspace
    write_eval(root, "sft", [i % 2 == 0 for i in range(200)])
    write_eval(root, "rl", [i % 5 != 0 for i in range(200)])
    assert verify_and_promote(cfg)["promoted"]  # v1 holds @champion
    model, tok = initial_policy(cfg.model, seed=2)  # new RL weights, judged against v1 too
    model.save_pretrained(root / cfg.rl.out_dir)
    write_eval(root, "rl", [i % 5 != 0 for i in range(200)])
    monkeypatch.setattr(promotion, "_champion_scores", lambda cfg, champion, keys: np.array(
        [float(i % 5 != 0) for i in range(200)]))  # re-evaluated: as good as the candidate
    assert not verify_and_promote(cfg)["promoted"]
    report = MlflowClient().get_model_version("pipo-policy", "2").description
    assert report.startswith("**pipo-policy v2: not promoted (@champion stays on v1)**")
    assert "**Champion**: v1 (`@champion`, re-evaluated on the same problems and seed)" in report
    assert "| rl vs champion v1 | 200 | 0.800 | 0.800 | +0.000 |" in report


def test_a_description_longer_than_mlflow_keeps_is_cut_saying_where_the_rest_is():
    cut = fit_description("x" * 6000, "reports/verify/report.md")
    assert len(cut) == DESCRIPTION_LIMIT and cut.endswith("the full report: reports/verify/report.md)")
    assert fit_description("short", "anywhere") == "short"


def test_mismatched_problem_sets_are_refused(workspace):
    root, cfg = workspace
    write_eval(root, "sft", [True, False, True])
    write_eval(root, "rl", [True, True, True, True])
    with pytest.raises(ValueError, match="same problems"):
        verify_and_promote(cfg)
    assert not (root / "metrics" / "verify.json").exists()


def test_pooled_scores_use_the_configured_score():
    table = pd.DataFrame({"id": ["a", "b"], "greedy_correct": [True, False],
                          "sample_correct": [[True, False, False, False], [True, True, True, True]]})
    keys, greedy = pooled_scores({"x": table}, "greedy")
    _, share = pooled_scores({"x": table}, "mean_at_k")
    assert keys == ["x/a", "x/b"] and greedy.tolist() == [1.0, 0.0] and share.tolist() == [0.25, 1.0]


def test_gate_metric_names_are_the_documented_ones_with_and_without_a_champion():
    """docs/metrics.md lists these names; users chart them across runs, so they must not change."""
    c = compare("any", [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], num_resamples=10)
    fields = ["diff", "ci_low", "ci_high", "p_value", "passed"]
    sft, champion = Matchup("rl", "sft"), Matchup("rl", "champion", "12")
    assert sft.label == "rl vs sft" and champion.label == "rl vs champion v12"
    assert sorted(gate_metrics([(sft, c)], True)) == sorted(
        [f"verify/rl_vs_sft/{f}" for f in fields] + ["verify/promoted"])
    assert sorted(gate_metrics([(Matchup("rl", "start model"), c), (champion, c)], False)) == sorted(
        [f"verify/rl_vs_start_model/{f}" for f in fields] + [f"verify/rl_vs_champion/{f}" for f in fields]
        + ["verify/promoted"])
    assert gate_metrics([(sft, c)], False)["verify/promoted"] == 0.0
