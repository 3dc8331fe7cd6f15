"""MLflow tracking: one experiment, a parent run per pipeline run, a nested run per stage.

Stages run in their own processes (DVC calls them), so nesting crosses processes: the pipeline
flow creates the parent run and passes its id in PIPO_PARENT_RUN_ID; a stage started by plain
`dvc repro` has no parent and logs a top-level run tagged with its stage.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from components.config import REPO_ROOT, Config

PARENT_ENV = "PIPO_PARENT_RUN_ID"
MLFLOW_DIR = REPO_ROOT / "mlflow"


class TrackingUnavailableError(RuntimeError):
    pass


def tracking_uri(cfg: Config) -> str:
    """params.yaml wins, then MLFLOW_TRACKING_URI, then the embedded sqlite store under mlflow/."""
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{MLFLOW_DIR / 'mlflow.db'}"


def ensure_experiment(cfg: Config) -> str:
    """Point MLflow at the store and return the experiment id, creating it if needed.

    Raises TrackingUnavailableError with the URI when the store cannot be reached, so a
    misconfigured store fails before any training starts, not after it.
    """
    import mlflow

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:///") and uri.removeprefix("sqlite:///").startswith(str(MLFLOW_DIR)):
            location = (MLFLOW_DIR / "artifacts").as_uri()
        return mlflow.create_experiment(cfg.tracking.experiment, artifact_location=location)
    except Exception as exc:  # MLflow raises many types for an unreachable store
        raise TrackingUnavailableError(f"MLflow tracking store {uri} cannot be reached: {exc}") from exc


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str) -> Iterator[object]:
    """A run for one stage, nested under the pipeline's parent run when there is one."""
    import mlflow

    experiment_id = ensure_experiment(cfg)
    tags = {"pipo.stage": stage}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags) as run:
        mlflow.log_params(cfg.flat())
        yield run


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def metric_key(name: str) -> str:
    """MLflow metric names allow [/\\w.\\- :]; '@' (pass@1) becomes '_at_'."""
    return name.replace("@", "_at_")
