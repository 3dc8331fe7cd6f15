"""End to end: the Prefect flow, then `dvc repro` on the same repository, with real services.

One repository is shared by the tests of this module, in order: the flow builds everything, so a
following `dvc repro` must be a no-op, `dvc exp run -S` of an rl param must rerun only rl, evaluate and
verify, and `dvc push` must work on the result.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.e2e import BIN, make_repo, mlflow_runs, registered_versions, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("e2e") / "repo")


def ran_stages(output: str) -> list[str]:
    return [s for s in ("prepare", "sft", "rl", "evaluate", "verify") if f"Running stage '{s}'" in output]


def test_prefect_flow_runs_every_stage_and_tracks_it(repo):
    """The flow, with the RL process killed by SIGKILL in the middle of iteration 2 on its first
    attempt: Prefect's task retry reruns `dvc repro rl`, which resumes from the checkpoint."""
    fired = repo.parent / "fault-fired"
    proc = run([str(BIN / "python"), "-m", "flows.pipeline"], repo,
               env_extra={"PIPO_FAULT": "rollout@2", "PIPO_FAULT_ONCE": str(fired)})
    out = proc.stdout + proc.stderr
    assert ran_stages(out) == ["prepare", "sft", "rl", "evaluate", "verify"]
    assert fired.exists() and "stage 'rl' failed" in out and "resumed from" in out
    rl_runs = sorted((r for r in mlflow_runs(repo) if r.data.tags.get("pipo.stage") == "rl"),
                     key=lambda r: r.info.start_time)
    assert len(rl_runs) == 2 and rl_runs[1].data.tags["rl.resumed_from_iteration"] == "2"
    assert rl_runs[1].data.tags["rl.resumes_run_id"] == rl_runs[0].info.run_id
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    for model in ("untrained", "sft", "rl"):
        m = metrics[model]["chain_sum"]
        assert 0.0 <= m["pass@1"] <= 1.0
        assert set(m) == {"pass@1", "mean@2", "pass@2", "maj@2"}  # the DVC metrics: what runs are compared by
    for path in ("data/prepared/eval.parquet", "models/sft/model.safetensors", "models/rl/model.safetensors",
                 "reports/eval/rl/chain_sum.parquet", "reports/eval/summary.csv", "reports/validation/report.md",
                 "reports/verify/report.md", "metrics/verify.json", "checkpoints/rl"):
        assert (repo / path).exists(), path

    runs = mlflow_runs(repo)
    parents = [r for r in runs if r.data.tags.get("pipo.stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.data.tags["pipo.stage"]: r for r in sorted(runs, key=lambda r: r.info.start_time)
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}  # the last run per stage
    assert set(children) == {"prepare", "sft", "rl", "evaluate", "verify"}
    assert children["rl"].data.params["rl.iterations"] == "3"
    assert "reward/mean" in children["rl"].data.metrics
    assert "eval/rl/chain_sum/pass_at_1" in parents[0].data.metrics
    assert "verify/rl_vs_sft/diff" in children["verify"].data.metrics

    # the RL model is registered with its provenance; the alias follows the verdict
    verdict = json.loads((repo / "metrics" / "verify.json").read_text())
    versions = registered_versions(repo)
    assert len(versions) == 1
    tags = versions[0].tags
    assert tags["verdict"] == ("passed" if verdict["promoted"] else "failed")
    assert tags["parent_run_id"] == parents[0].info.run_id
    assert tags["algorithm"] == "grpo" and tags["pipo.enabled"] == "true"
    assert tags["data_version"].startswith("data/prepared:") and tags["git_commit"] != "unknown"
    assert (versions[0].aliases == ["champion"]) == verdict["promoted"]


def test_champion_loads_as_a_pyfunc_policy_in_a_fresh_process(repo):
    """models:/pipo-policy@champion answers prompts from a new interpreter, exactly as the policy
    folder it was registered from does. If the gate did not promote the tiny model, the alias
    is set by hand first, as a user would in the MLflow UI."""
    from mlflow.tracking import MlflowClient

    import pandas as pd

    from components.model.chat import render_prompt
    from components.model.factory import load_policy
    from components.registry.versions import download_policy
    from components.reward.extract import extract_boxed
    from components.rollout import HFRolloutEngine

    uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    version = registered_versions(repo)[-1]
    if "champion" not in version.aliases:
        MlflowClient(tracking_uri=uri).set_registered_model_alias("pipo-policy", "champion", version.version)
    prompts = pd.read_parquet(repo / "data" / "prepared" / "eval.parquet")["prompt"].tolist()[:6]
    script = ("import json, sys, mlflow, pandas as pd\n"
              "m = mlflow.pyfunc.load_model('models:/pipo-policy@champion')\n"
              "out = m.predict(pd.DataFrame({'prompt': json.loads(sys.argv[1])}))\n"
              "print('RESULT ' + json.dumps(out.to_dict('list')))\n")
    proc = run([str(BIN / "python"), "-c", script, json.dumps(prompts)], repo.parent,
               env_extra={"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": ""})
    got = json.loads(proc.stdout.split("RESULT ", 1)[1])

    import mlflow

    mlflow.set_tracking_uri(uri)
    folder = download_policy("pipo-policy", version.version, repo.parent / "champion-download")
    model, tok = load_policy(folder)
    rendered = [render_prompt(tok, p, None, "auto") for p in prompts]  # as the pyfunc renders them
    want = HFRolloutEngine(model, tok).generate(rendered, 34, greedy=True).texts
    assert got["completion"] == want
    assert got["answer"] == [extract_boxed(t) for t in want]


def test_second_dvc_repro_runs_nothing(repo):
    proc = run([str(BIN / "dvc"), "repro"], repo)
    assert ran_stages(proc.stdout) == []
    assert "up to date" in proc.stdout


def test_dvc_exp_run_of_an_rl_param_reruns_only_rl_evaluate_and_verify(repo):
    """`dvc exp run -S` in the working tree, as the README shows it: params.yaml gets the value and only the
    stages that read it run again; the new model is registered and tested against the champion."""
    # weight decay changes the weights even when the tiny untrained policy earns no reward (a changed lr
    # with all-zero advantages leaves models/rl byte-identical, and DVC then rightly skips evaluate)
    proc = run([str(BIN / "dvc"), "exp", "run", "-S", "rl.weight_decay=0.1"], repo)
    assert ran_stages(proc.stdout) == ["rl", "evaluate", "verify"]
    assert yaml.safe_load((repo / "params.yaml").read_text())["rl"]["weight_decay"] == 0.1
    assert len(registered_versions(repo)) == 2
    # a champion exists now (promoted by the gate or by hand above): the new model was tested against it
    verdict = json.loads((repo / "metrics" / "verify.json").read_text())
    assert {"rl_vs_sft", "rl_vs_champion"} <= set(verdict)
    shown = run([str(BIN / "dvc"), "metrics", "show", "--json"], repo).stdout
    assert "pass@1" in shown and "untrained" in shown


def test_dvc_push_to_local_remote(repo):
    proc = run([str(BIN / "dvc"), "push"], repo)
    assert "pushed" in proc.stdout or "Everything is up to date" in proc.stdout
    assert any((repo.parent / "dvc-remote").rglob("*")), "the local remote received no files"


@pytest.mark.parametrize("module, stages", [
    ("components/rl/pipo.py", {"rl"}),
    ("components/reward/score.py", {"prepare", "rl", "evaluate", "verify"}),
    ("components/stages/common.py", {"prepare", "sft", "rl", "evaluate", "verify"}),
])
def test_editing_code_a_stage_imports_makes_dvc_status_report_that_stage(repo, module, stages):
    """dvc.yaml's code deps at work on the real DVC: an edit to a module marks exactly the stages that run it."""
    path = repo / module
    original = path.read_text()
    try:
        assert json.loads(run([str(BIN / "dvc"), "status", "--json"], repo).stdout) == {}
        path.write_text(original + "\n# an edit\n")
        changed = json.loads(run([str(BIN / "dvc"), "status", "--json"], repo).stdout)
        assert set(changed) == stages
    finally:
        path.write_text(original)


@pytest.mark.parametrize("algorithm", ["grpo", "dr_grpo", "dapo", "gspo"])
@pytest.mark.parametrize("pipo", [False, True], ids=["base", "pipo"])
def test_every_algorithm_runs_through_the_rl_and_evaluate_stages(repo, monkeypatch, algorithm, pipo):
    """The real stage functions (what `dvc repro` runs), in-process to skip 8 interpreter start-ups."""
    from mlflow.tracking import MlflowClient

    from components.config import load_config
    from components.rl.checkpoint import latest_checkpoint
    from components.stages.evaluate import run as run_evaluate
    from components.stages.rl import run as run_rl

    monkeypatch.chdir(repo)
    uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config(repo / "params.yaml", [f"rl.algorithm={algorithm}", f"rl.pipo.enabled={str(pipo).lower()}",
                                             "rl.pipo.window=2"])
    run_rl(cfg)
    results = run_evaluate(cfg)
    assert set(results) == {"untrained", "sft", "rl"}
    runs = [r for r in mlflow_runs(repo) if r.data.params.get("rl.algorithm") == algorithm
            and r.data.tags.get("pipo.stage") == "rl" and r.data.params.get("rl.pipo.enabled") == str(pipo)]
    assert runs
    rl_run = max(runs, key=lambda r: r.info.start_time)  # the run this test just made
    assert ("pipo/mu_t" in rl_run.data.metrics) == pipo
    # Every iteration was trained, as recorded by the run itself (not the count the stage reports):
    # one logged reward step per iteration, and the last checkpoint written at iteration rl.iterations.
    start = int(rl_run.data.tags.get("rl.resumed_from_iteration", 0))
    history = MlflowClient(tracking_uri=uri).get_metric_history(rl_run.info.run_id, "reward/mean")
    steps = sorted(m.step for m in history)
    assert steps == list(range(start, cfg.rl.iterations)), steps
    newest = latest_checkpoint(repo / rl_run.data.tags["rl.checkpoint_dir"])
    assert newest is not None and json.loads((newest / "meta.json").read_text())["iteration"] == cfg.rl.iterations
