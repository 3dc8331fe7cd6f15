"""A small, real MLflow store for the UI test: experiment `pipo` with a pipeline run and nested
stage runs, and registered model `pipo-policy` (2 versions, `champion` on v2).

`build_demo_store` uses the pipeline's own code (components.infra.tracking, components.registry.versions) on a
tiny untrained policy; it sets MLflow's global tracking URI, so the test runs it in a child process: `python -m tests.ui_store ROOT` prints the summary as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXPERIMENT = "pipo"
MODEL_NAME = "pipo-policy"
ALIAS = "champion"
STAGE_RUNS = ("sft", "rl", "verify")


def build_demo_store(root: Path) -> dict:
    """Create `root/mlflow.db` and `root/artifacts` (the layout mlflow/ui.sh serves) with the
    pipeline's own tracking and registry code; returns names and ids."""
    import mlflow

    from components.config import load_config
    from components.model.factory import initial_policy
    from components.registry.versions import log_policy, register, set_alias, tag_version
    from components.infra.tracking import ensure_experiment

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = load_config(overrides=[f"tracking.tracking_uri={uri}", "model.tiny.hidden_size=32",
                                 "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64"])
    experiment_id = ensure_experiment(cfg)  # artifacts beside the database, as the pipeline does
    mlflow.set_registry_uri(uri)
    model, tok = initial_policy(cfg.model, seed=0)
    policy_dir = root / "policy"
    model.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)

    runs: dict[str, str] = {}
    versions: list[str] = []
    with mlflow.start_run(experiment_id=experiment_id, run_name="pipeline", tags={"pipo.stage": "pipeline"}) as parent:
        runs["pipeline"] = parent.info.run_id
        mlflow.log_params({"seed": 0, "model": "tiny"})
        for stage in STAGE_RUNS:
            # experiment_id again: a nested run otherwise lands in the active (Default) experiment.
            with mlflow.start_run(experiment_id=experiment_id, run_name=stage, nested=True,
                                  tags={"pipo.stage": stage}) as run:
                runs[stage] = run.info.run_id
                mlflow.log_param("stage", stage)
                if stage == "sft":
                    for step in range(5):
                        mlflow.log_metric("sft/loss", 2.0 / (step + 1), step=step)
                if stage == "rl":
                    mlflow.log_params({"rl.algorithm": "grpo", "rl.num_generations": 4})
                    for step in range(8):
                        mlflow.log_metric("reward/mean", 0.2 + 0.08 * step, step=step)
                if stage == "verify":
                    # Two registrations, as two pipeline runs' promotion gates would leave them.
                    for verdict in ("failed", "passed"):
                        info = log_policy(policy_dir, max_new_tokens=8, name=f"policy-{verdict}")
                        version = register(info.model_uri, MODEL_NAME, {"verdict": verdict, "algorithm": "grpo"})
                        versions.append(str(version.version))
    set_alias(MODEL_NAME, ALIAS, versions[-1])
    tag_version(MODEL_NAME, versions[-1], {"promotion": f"promoted to @{ALIAS}"})
    return {"experiment": EXPERIMENT, "experiment_id": experiment_id, "runs": runs,
            "model": MODEL_NAME, "versions": versions, "alias": ALIAS, "champion_version": versions[-1]}


if __name__ == "__main__":
    print(json.dumps(build_demo_store(Path(sys.argv[1]).resolve())))
