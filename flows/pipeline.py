"""The pipeline flow: prepare -> sft -> rl -> evaluate -> verify, each task running `dvc repro` on one stage.

Why through DVC: DVC decides what is stale (a second run does nothing, a changed rl param reruns
only rl and evaluate) and versions the outputs; Prefect adds retries, logs, a UI and deployments.
Both reach the same stage code (components/stages/STAGE.py via components/cli.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Iterator

from components.infra.runtime import quiet_environment

quiet_environment()

from prefect import flow, get_run_logger, task  # noqa: E402

from components.config import REPO_ROOT, load_config  # noqa: E402
from components.infra.tracking import (PARENT_ENV, close_stale_runs, ensure_experiment, metric_key,  # noqa: E402
                                       process_tags, sigterm_raises)
from flows.processes import start, stop_tree  # noqa: E402
from flows.stage_outputs import kept_outputs  # noqa: E402

STAGES = ("prepare", "sft", "rl", "evaluate", "verify")


def _dvc() -> str:
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


@task(name="dvc-stage", retries=1, retry_delay_seconds=2, task_run_name="{stage}")
def run_stage(stage: str, parent_run_id: str, force: bool = False) -> None:
    """Run one DVC stage, streaming its output into the Prefect log; fail with its last lines.

    dvc runs in its own session. Stopping the flow (SIGTERM, Ctrl-C) stops dvc and the stage at once
    (the whole process tree, SIGKILL after a grace period); a stopped or failed stage's previous
    outputs, which dvc deleted before running it, are put back (flows/stage_outputs.py).
    """
    logger = get_run_logger()
    cmd = [_dvc(), "repro", "--single-item", stage] + (["--force"] if force else [])
    env = dict(os.environ, **{PARENT_ENV: parent_run_id})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    tail: deque[str] = deque(maxlen=30)
    with kept_outputs(stage, _dvc(), logger) as restore:
        proc = start(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     bufsize=1)
        try:
            for line in proc.stdout:
                line = line.rstrip()
                tail.append(line)
                logger.info("[%s] %s", stage, line)
            code = proc.wait()
        except BaseException:  # SIGTERM (Prefect raises it here as TerminationSignal), Ctrl-C, a crash
            logger.warning("[%s] interrupted: stopping dvc and the stage", stage)
            stop_tree(proc)
            restore()
            raise
        finally:
            proc.stdout.close()
        if code:
            restore()
            raise RuntimeError(f"stage {stage!r} failed (exit {code}):\n" + "\n".join(tail))


@contextlib.contextmanager
def parent_run(cfg) -> Iterator[object]:
    """The pipeline's MLflow run, tagged with this process (pid, host, start) like a stage's run, so
    the next flow start marks KILLED a parent run whose flow died without ending it (SIGKILL)."""
    import mlflow

    experiment_id = ensure_experiment(cfg)  # an unreachable MLflow store fails here, before any stage
    close_stale_runs(experiment_id, "pipeline")
    with mlflow.start_run(experiment_id=experiment_id, run_name="pipeline",
                          tags={"pipo.stage": "pipeline", **process_tags()}) as run:
        yield run


@flow(name="pipo-pipeline", log_prints=True)
def pipo_pipeline(stages: list[str] = list(STAGES), force: bool = False) -> dict:
    """Run the pipeline stages in order under one MLflow parent run; returns the eval metrics."""
    import mlflow

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")
    cfg = load_config(REPO_ROOT / "params.yaml")  # a bad params file fails here, before any stage
    with parent_run(cfg) as run:
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
    # SIGTERM unwinds like Ctrl-C: run_stage stops its dvc tree, and atexit stops the ephemeral
    # Prefect API server this process started (the default action would orphan it). Prefect's own
    # SIGTERM handler, active while the flow runs, re-sends the signal to this one when it is done.
    with sigterm_raises():
        pipo_pipeline(stages=sys.argv[1:] or list(STAGES))  # `python -m flows.pipeline [STAGE ...]`
