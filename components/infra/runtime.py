"""Process-wide settings every entry point applies first: no telemetry, no hub, sane threads."""

from __future__ import annotations

import os

QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",  # MLflow accepts only the word "true"
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def quiet_environment() -> None:
    """Set defaults without overriding what the user exported."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def configure_threads() -> None:
    """PIPO_TORCH_THREADS=N caps torch's intra-op threads (1 avoids thrashing when processes share cores)."""
    threads = os.environ.get("PIPO_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
