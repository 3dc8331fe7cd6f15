"""End to end: the Prefect flow, then `dvc repro` on the same repository, with real services.

One repository is shared by the tests of this module, in order: the flow builds everything, so a
following `dvc repro` must be a no-op, a changed rl param must rerun only rl and evaluate, and
`dvc exp run -S` and `dvc push` must work on the result.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e_support import BIN, make_repo, mlflow_runs, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("e2e") / "repo")


def ran_stages(output: str) -> list[str]:
    return [s for s in ("prepare", "sft", "rl", "evaluate") if f"Running stage '{s}'" in output]


def test_prefect_flow_runs_every_stage_and_tracks_it(repo):
    proc = run([str(BIN / "python"), "-m", "flows.pipeline"], repo)
    assert ran_stages(proc.stdout + proc.stderr) == ["prepare", "sft", "rl", "evaluate"]
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    for model in ("untrained", "sft", "rl"):
        assert 0.0 <= metrics[model]["pass@1"] <= 1.0
        assert "mean@2" in metrics[model]
    for path in ("data/prepared/eval.parquet", "models/sft/model.safetensors", "models/rl/model.safetensors",
                 "reports/eval/rl.parquet", "reports/validation/report.md", "checkpoints/rl"):
        assert (repo / path).exists(), path

    runs = mlflow_runs(repo)
    parents = [r for r in runs if r.data.tags.get("pipo.stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.data.tags["pipo.stage"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert set(children) == {"prepare", "sft", "rl", "evaluate"}
    assert children["rl"].data.params["rl.iterations"] == "3"
    assert "reward/mean" in children["rl"].data.metrics
    assert "eval/rl/pass_at_1" in parents[0].data.metrics


def test_second_dvc_repro_runs_nothing(repo):
    proc = run([str(BIN / "dvc"), "repro"], repo)
    assert ran_stages(proc.stdout) == []
    assert "up to date" in proc.stdout


def test_rl_param_change_reruns_only_rl_and_evaluate(repo):
    params = repo / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    # weight decay changes the weights even when the tiny untrained policy earns no reward
    # (a changed lr with all-zero advantages leaves models/rl byte-identical, and DVC then
    # rightly skips evaluate)
    raw["rl"]["weight_decay"] = 0.1
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run([str(BIN / "dvc"), "repro"], repo)
    assert ran_stages(proc.stdout) == ["rl", "evaluate"]


def test_dvc_exp_run_with_set_param_and_metrics_show(repo):
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "rl.weight_decay 0.1"], repo)
    proc = run([str(BIN / "dvc"), "exp", "run", "-S", "rl.weight_decay=0.2"], repo)
    assert ran_stages(proc.stdout) == ["rl", "evaluate"]
    shown = run([str(BIN / "dvc"), "metrics", "show", "--json"], repo).stdout
    assert "pass@1" in shown and "untrained" in shown


def test_dvc_push_to_local_remote(repo):
    proc = run([str(BIN / "dvc"), "push"], repo)
    assert "pushed" in proc.stdout or "Everything is up to date" in proc.stdout
    assert any((repo.parent / "dvc-remote").rglob("*")), "the local remote received no files"


@pytest.mark.parametrize("algorithm", ["grpo", "dr_grpo", "dapo", "gspo"])
@pytest.mark.parametrize("pipo", [False, True], ids=["base", "pipo"])
def test_every_algorithm_runs_through_the_rl_and_evaluate_stages(repo, monkeypatch, algorithm, pipo):
    """The real stage functions (what `dvc repro` runs), in-process to skip 8 interpreter start-ups."""
    from components.config import load_config
    from components.stages import run_evaluate, run_rl

    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    cfg = load_config(repo / "params.yaml", [f"rl.algorithm={algorithm}", f"rl.pipo.enabled={str(pipo).lower()}",
                                             "rl.pipo.window=2"])
    summary = run_rl(cfg)
    assert summary["iterations"] == cfg.rl.iterations
    results = run_evaluate(cfg)
    assert set(results) == {"untrained", "sft", "rl"}
    runs = [r for r in mlflow_runs(repo) if r.data.params.get("rl.algorithm") == algorithm
            and r.data.tags.get("pipo.stage") == "rl" and r.data.params.get("rl.pipo.enabled") == str(pipo)]
    assert runs and ("pipo/mu_t" in runs[0].data.metrics) == pipo
