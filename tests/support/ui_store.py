"""A small, real MLflow store for the UI test, shaped like two pipeline runs' records.

Experiment `pipo` (created by the pipeline's own `ensure_experiment`) holds two pipeline runs, DVC
experiments `demo-grpo` (GRPO) and `demo-pipo` (GRPO+PIPO), each a parent run with nested stage runs
named as the stages name them ("rl · grpo+pipo · demo-pipo"). The sft and rl runs carry their split
as a dataset input, the rl runs a reward plot (plots/rl_reward.png). Registered model `pipo-policy`
has a version per pipeline run (registered with the pipeline's registry code on a tiny untrained
policy), each described by a markdown verdict report; `champion` is on the one that passed.

Names, inputs, plots and descriptions are made here with MLflow's API, mimicking the stages, so the
UI test does not run training. `build_demo_store` sets MLflow's global tracking URI, so the test runs
it in a child process: `python -m tests.support.ui_store ROOT` prints the summary as JSON.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from tests.support.mlflow_store import empty_store

EXPERIMENT = "pipo"
MODEL_NAME = "pipo-policy"
ALIAS = "champion"
SEP = " · "  # the stages' run-name separator
# DVC experiment -> (algorithm label, whether its version passes the gate); the passing one goes last,
# so the alias ends on it.
PIPELINES = {"demo-grpo": ("grpo", False), "demo-pipo": ("grpo+pipo", True)}
RL_SIDE = ("pipeline", "rl", "verify")  # runs whose names carry the algorithm, as the stages name them
PLOT = "plots/rl_reward.png"


def run_name(stage: str, label: str, exp: str) -> str:
    return SEP.join([stage, label, exp] if stage in RL_SIDE else [stage, exp])


def verdict_report(model: str, version: str, label: str, passed: bool) -> str:
    """A version description in the form of the promotion gate's verdict report (markdown)."""
    outcome = f"promoted to @{ALIAS}" if passed else f"not promoted: @{ALIAS} unchanged"
    diff, low, high = (0.150, 0.050, 0.250) if passed else (-0.025, -0.125, 0.075)
    verdict = "PASS" if passed else "FAIL"
    return "\n".join([
        f"**{model} v{version}: {outcome}**",
        "",
        f"RL policy: {label}, seed 0, rollout engine hf.",
        "",
        "## Promotion gate",
        "",
        "| comparison | n | accuracy a | accuracy b | diff | CI | p-value | McNemar p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| rl vs sft | 40 | 0.450 | {0.450 + diff:.3f} | {diff:+.3f} | 95% [{low:+.3f}, {high:+.3f}] | 0.01 | 0.02 "
        f"| {verdict} (min_gain +0.000) |",
        "",
        f"Gate {'PASSED' if passed else 'FAILED'}: a comparison passes iff the lower end of its bootstrap CI is "
        "above min_gain (p-value: one-sided bootstrap, P(diff <= 0)).",
        "",
    ])


def _split_file(root: Path, split: str):
    """A small parquet split under root/data/; returns (path, frame, md5) as the stages log them."""
    import pandas as pd

    start = len(split) * 10  # splits of different rows, so different digests
    frame = pd.DataFrame({"prompt": [f"{a}+{a + 1}=" for a in range(start, start + 8)],
                          "answer": [str(2 * a + 1) for a in range(start, start + 8)]})
    path = root / "data" / f"{split}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path, frame, hashlib.md5(path.read_bytes()).hexdigest()


def _log_split(root: Path, split: str) -> str:
    import mlflow
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    path, frame, digest = _split_file(root, split)
    # An explicit "local" source, as the stages log it: a bare path is ambiguous to MLflow (it warns).
    source = get_dataset_source_from_json(json.dumps({"uri": str(path)}), source_type="local")
    mlflow.log_input(mlflow.data.from_pandas(frame, source=source, name=split, digest=digest), context="train")
    return f"{split} ({digest})"  # as the runs table's Dataset column shows it


def _log_reward_plot(rewards: list[float]) -> None:
    import matplotlib
    import mlflow

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(rewards)), rewards, marker="o")
    ax.set(xlabel="iteration", ylabel="mean reward", title="Training reward per iteration")
    mlflow.log_figure(fig, PLOT)
    plt.close(fig)


def build_demo_store(root: Path) -> dict:
    """Create `root/mlflow.db` and `root/artifacts` (the layout mlflow/ui.sh serves); returns names and ids."""
    import mlflow
    from mlflow import MlflowClient

    from components.config import load_config
    from components.infra.tracking import EXPERIMENT_TAG, ensure_experiment
    from components.model.factory import initial_policy
    from components.registry.versions import log_policy, register, set_alias, tag_version

    root.mkdir(parents=True, exist_ok=True)
    uri = empty_store(root / 'mlflow.db')
    cfg = load_config(overrides=[f"tracking.tracking_uri={uri}", "model.tiny.hidden_size=32",
                                 "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64"])
    experiment_id = ensure_experiment(cfg)  # artifacts beside the database, as the pipeline does
    mlflow.set_registry_uri(uri)
    model, tok = initial_policy(cfg.model, seed=0)
    policy_dir = root / "policy"
    model.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)

    runs: dict[str, str] = {}  # run id -> run name
    parents: list[str] = []
    datasets: dict[str, str] = {}  # run id -> its dataset input, as the Dataset column shows it
    plot_run = ""
    versions: dict[str, dict] = {}
    for exp, (label, passed) in PIPELINES.items():
        tags = {EXPERIMENT_TAG: exp}
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name("pipeline", label, exp),
                              tags=tags | {"pipo.stage": "pipeline"}) as parent:
            runs[parent.info.run_id] = parent.info.run_name
            parents.append(parent.info.run_id)
            for stage in ("sft", "rl", "verify"):
                name = run_name(stage, label, exp)
                # experiment_id again: a nested run otherwise lands in the active (Default) experiment.
                with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=True,
                                      tags=tags | {"pipo.stage": stage}) as run:
                    runs[run.info.run_id] = name
                    if stage in ("sft", "rl"):
                        datasets[run.info.run_id] = _log_split(root, stage)
                    if stage == "rl":
                        rewards = [0.2 + (0.08 if passed else 0.03) * step for step in range(8)]
                        for step, reward in enumerate(rewards):
                            mlflow.log_metric("reward/mean", reward, step=step)
                        _log_reward_plot(rewards)
                        plot_run = run.info.run_id if passed else plot_run
                    if stage == "verify":
                        info = log_policy(policy_dir, max_new_tokens=8)
                        version = str(register(info.model_uri, MODEL_NAME, {"verdict": "passed" if passed else "failed",
                                                                            "algorithm": label}).version)
                        report = verdict_report(MODEL_NAME, version, label, passed)
                        MlflowClient().update_model_version(MODEL_NAME, version, description=report)
                        versions[version] = {"passed": passed, "description": report}
    champion = next(v for v, info in versions.items() if info["passed"])
    set_alias(MODEL_NAME, ALIAS, champion)
    tag_version(MODEL_NAME, champion, {"promotion": f"promoted to @{ALIAS}"})
    return {"experiment": EXPERIMENT, "experiment_id": experiment_id, "runs": runs, "parents": parents,
            "datasets": datasets,
            "model": MODEL_NAME, "versions": versions, "alias": ALIAS, "champion_version": champion,
            "plot": {"run_id": plot_run, "path": PLOT}}


if __name__ == "__main__":
    print(json.dumps(build_demo_store(Path(sys.argv[1]).resolve())))
