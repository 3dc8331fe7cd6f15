"""The user's job end to end, as a user runs it: their model, their answer-only data, their reward, through
the served deployment with overrides (README: "Your model, your data, your reward").

In a fresh copy of the repository: a Qwen2 model folder built offline (random weights, a real
architecture), an answer-only verl parquet, a reward file in rewards/ (untracked, as a user's would be);
`make serve`'s server and deployment; `prefect deployment run` with overrides. Then what the user checks:
the run is a DVC experiment (params.yaml untouched), the reward is theirs, the model moved, the verdict is
in the registry, and DVC notices when their data file changes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from flows.local_server import wait_for_url
from tests.support.e2e import BIN, env_for, free_port, make_repo, mlflow_runs, registered_versions, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Values in {0.5, 1.0}, varying with the completion: the built-in verifier would give a random-weight model
# 0.0 everywhere, and a constant would leave GRPO no advantage to learn from.
USER_REWARD = '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return 0.5 + 0.5 * (len(solution_str) % 2)
'''

OVERRIDES = [
    "sft.enabled=false", "model.name_or_path=models/base",
    "data.source=verl", "data.files=[data/my_train.parquet]", "data.num_rl=40", "data.num_eval=8",
    "reward.functions=[rewards/my_reward.py:compute_score]",
    "rl.iterations=3", "rl.prompts_per_iteration=4", "rl.num_generations=4", "rl.max_completion_length=12",
    "rl.lr=1e-3", "eval.max_completion_length=12", "eval.num_samples=2", "verify.num_resamples=200",
]


def start_serving(repo, tmp_path):
    port = free_port()
    # the served deployment polls for new runs every 10 s by default: 1 s keeps each run from waiting idle
    env = dict(env_for(repo), PIPO_PREFECT_PORT=str(port), PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_RUNNER_POLL_FREQUENCY="1")
    proc = subprocess.Popen([sys.executable, "-m", "flows.local_server"], cwd=repo, env=env,
                            stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    wait_for_url(f"{api}/deployments/name/pipo-pipeline/local", deadline_s=180, proc=proc)
    return proc, {"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect")}


def test_the_users_model_data_and_reward_through_the_deployment(tmp_path):
    repo = make_repo(tmp_path / "repo", [])  # params.yaml as committed: the user changes it only by overrides
    run([str(BIN / "python"), "-m", "components.model.local_qwen2", "models/base", "--shape", "test"], repo)
    run([str(BIN / "python"), "scripts/example_verl_data.py", "data/my_train.parquet", "--rows", "48"], repo)
    (repo / "rewards" / "my_reward.py").write_text(USER_REWARD)
    params_before = (repo / "params.yaml").read_bytes()

    server, prefect_env = start_serving(repo, tmp_path)
    try:
        inspect = run([str(BIN / "prefect"), "deployment", "inspect", "pipo-pipeline/local"], repo,
                      env_extra=prefect_env)
        for parameter in ("'overrides'", "'preset'", "'experiment'", "'stages'", "'force'"):
            assert parameter in inspect.stdout, inspect.stdout[-3000:]
        deploy(repo, prefect_env, tmp_path, {"overrides": OVERRIDES, "experiment": "my-job"})
        artifacts = json.loads(run([str(BIN / "prefect"), "artifact", "inspect", "pipeline-report", "-o", "json"],
                                   repo, env_extra=prefect_env).stdout)
        report = artifacts[0]["data"]
        assert "DVC experiment my-job" in report and "registered version 1" in report, report
        assert "| rl | chain_sum |" in report and "/versions/1" in report, report

        # A DVC experiment: listed by `dvc exp show`, the working tree's params.yaml not rewritten.
        assert (repo / "params.yaml").read_bytes() == params_before
        shown = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], repo).stdout)
        names = [exp.get("name") for entry in shown for exp in (entry.get("experiments") or [])]
        assert "my-job" in names, names

        # Its outputs, applied to the working tree, are up to date there: a deployment run without
        # parameters then runs nothing and leaves no MLflow run behind.
        run([str(BIN / "dvc"), "exp", "apply", "my-job"], repo)
        pipeline_runs = [r for r in mlflow_runs(repo) if r.data.tags.get("pipo.stage") == "pipeline"]
        again = deploy(repo, prefect_env, tmp_path, {})
        assert "no stage ran" in (tmp_path / "serve.log").read_text(errors="replace"), again
        assert len([r for r in mlflow_runs(repo) if r.data.tags.get("pipo.stage") == "pipeline"]) == \
            len(pipeline_runs)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    # The user's scorer gave every reward (the built-in verifier gives this model 0).
    from mlflow.tracking import MlflowClient

    runs = mlflow_runs(repo)
    rl_run = next(r for r in runs if r.data.tags.get("pipo.stage") == "rl")
    assert rl_run.data.tags["dvc.experiment"] == "my-job"
    assert "sft.enabled=false" in rl_run.data.tags["pipo.overrides"]
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    rewards = [m.value for m in client.get_metric_history(rl_run.info.run_id, "reward/mean")]
    assert len(rewards) == 3 and min(rewards) >= 0.5, rewards

    # The verdict is on the registered version.
    versions = registered_versions(repo)
    assert versions and versions[-1].tags.get("verdict") in {"passed", "failed"}, versions

    # The trained model differs from the user's.
    from safetensors.torch import load_file

    base = load_file(repo / "models" / "base" / "model.safetensors")
    trained = load_file(repo / "models" / "rl" / "model.safetensors")
    assert set(base) == set(trained)
    assert any(not base[k].equal(trained[k]) for k in base)

    # DVC sees the user's data file by content: editing it makes the pipeline stale.
    assert "up to date" in run([str(BIN / "dvc"), "status"], repo).stdout
    run([str(BIN / "python"), "scripts/example_verl_data.py", "data/my_train.parquet", "--rows", "60"], repo)
    status = run([str(BIN / "dvc"), "status"], repo).stdout
    assert "data/my_train.parquet" in status and "modified" in status, status


def deploy(repo, prefect_env, tmp_path, params: dict):
    done = run([str(BIN / "prefect"), "deployment", "run", "pipo-pipeline/local", "--watch", "--watch-timeout",
                "600", "--params", json.dumps(params)], repo, timeout=700, check=False, env_extra=prefect_env)
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert done.returncode == 0 and "Completed" in done.stdout, done.stdout + done.stderr + log[-6000:]
    return done.stdout
