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
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:///"):  # artifacts beside the database, not in ./mlruns of the cwd
            location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        # The UI opens a "custom model development" experiment on its runs (otherwise on GenAI traces).
        return mlflow.create_experiment(cfg.tracking.experiment, artifact_location=location,
                                        tags={"mlflow.experimentKind": "custom_model_development"})
    except Exception as exc:  # MLflow raises many types for an unreachable store
        raise TrackingUnavailableError(f"MLflow tracking store {uri} cannot be reached: {exc}") from exc


def _probe_server(uri: str, timeout_s: float = 5.0) -> None:
    """One quick GET of the server's health endpoint: MLflow's own client retries an unreachable
    server with backoff for minutes before it gives up."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            if resp.status >= 400:
                raise TrackingUnavailableError(f"MLflow tracking server {uri} answered HTTP {resp.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailableError(f"MLflow tracking server {uri} cannot be reached: {exc}") from exc


def is_main_process() -> bool:
    """Rank 0 of an `accelerate launch` (or a plain process): the only one that talks to MLflow, so
    a multi-process stage is one run, not one per rank racing on the store."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str) -> Iterator[object]:
    """A run for one stage, nested under the pipeline's parent run when there is one (rank 0 only)."""
    import mlflow

    if not is_main_process():
        yield None
        return
    experiment_id = ensure_experiment(cfg)
    tags = {"pipo.stage": stage}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags) as run:
        mlflow.log_params(cfg.flat())
        yield run


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    if is_main_process():
        mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    if not is_main_process():
        return
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def metric_key(name: str) -> str:
    """MLflow metric names allow [/\\w.\\- :]; '@' (pass@1) becomes '_at_'."""
    return name.replace("@", "_at_")
