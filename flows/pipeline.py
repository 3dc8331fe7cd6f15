"""The pipeline flow: prepare -> sft -> rl -> evaluate -> verify, each task running `dvc repro` on one stage.

Why through DVC: DVC decides what is stale (a second run does nothing, a changed rl param reruns
only rl and evaluate) and versions the outputs; Prefect adds retries, logs, a UI and deployments.
Both reach the same stage code (components/stages/STAGE.py via components/cli.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from components.infra.runtime import quiet_environment

quiet_environment()

from prefect import flow, get_run_logger, task  # noqa: E402

from components.config import REPO_ROOT, load_config  # noqa: E402
from components.infra.tracking import PARENT_ENV, ensure_experiment, metric_key  # noqa: E402

STAGES = ("prepare", "sft", "rl", "evaluate", "verify")


def _dvc() -> str:
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


@task(name="dvc-stage", retries=1, retry_delay_seconds=2, task_run_name="{stage}")
def run_stage(stage: str, parent_run_id: str, force: bool = False) -> None:
    """Run one DVC stage, streaming its output into the Prefect log; fail with its last lines."""
    logger = get_run_logger()
    cmd = [_dvc(), "repro", "--single-item", stage] + (["--force"] if force else [])
    env = dict(os.environ, **{PARENT_ENV: parent_run_id})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    tail: deque[str] = deque(maxlen=30)
    with subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            logger.info("[%s] %s", stage, line)
        code = proc.wait()
    if code:
        raise RuntimeError(f"stage {stage!r} failed (exit {code}):\n" + "\n".join(tail))


@flow(name="pipo-pipeline", log_prints=True)
def pipo_pipeline(stages: list[str] = list(STAGES), force: bool = False) -> dict:
    """Run the pipeline stages in order under one MLflow parent run; returns the eval metrics."""
    import mlflow

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")
    cfg = load_config(REPO_ROOT / "params.yaml")  # a bad params file fails here, before any stage
    experiment_id = ensure_experiment(cfg)  # and so does an unreachable MLflow store
    with mlflow.start_run(experiment_id=experiment_id, run_name="pipeline", tags={"pipo.stage": "pipeline"}) as run:
        mlflow.log_params(cfg.flat())
        for stage in stages:
            run_stage(stage, run.info.run_id, force)
        metrics_file = REPO_ROOT / cfg.eval.metrics_file
        results = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        mlflow.log_metrics({metric_key(f"eval/{m}/{b}/{k}"): float(v) for m, benches in results.items()
                            for b, d in benches.items() for k, v in d.items()})
        for path in (metrics_file, REPO_ROOT / cfg.verify.metrics_file):
            if path.exists():
                mlflow.log_artifact(str(path))
        verdict = REPO_ROOT / cfg.verify.metrics_file
        if verdict.exists():
            results["verify"] = json.loads(verdict.read_text())
    for model_name, benches in results.items():
        if model_name == "verify":
            print(f"   verify: promoted={benches['promoted']}  registered v{benches.get('registered_version')}")
            continue
        for bench, d in benches.items():
            print(f"{model_name:>9} {bench}: " + "  ".join(f"{k} {v:.3f}" for k, v in d.items()
                                                         if k != "num_problems"))
    return results


if __name__ == "__main__":
    pipo_pipeline()
