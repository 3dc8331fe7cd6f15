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


# glibc's malloc serves a block below its mmap threshold from the heap, and raises that threshold to
# the size of every mmapped block freed (up to 32 MiB). Blocks of a few tens of MB allocated and freed
# per step (a [256, 32 k] fp32 logits block, 32.8 MB) then land on the heap between small tensors that
# live on, and the heap only grows: measured on the 12 M Qwen2 benchmark, forward+backward of the
# log-probs peaked at 3.75 GB of RSS, 1.58 GB with the threshold fixed at 16 MiB (fixing it also
# stops the adjustment). Smaller blocks (every tensor of the default tiny model) are unaffected.
MMAP_THRESHOLD_BYTES = 16 << 20
_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h


def limit_heap_growth(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve blocks of `threshold` bytes or more with mmap, returned to the OS when freed. glibc
    only; elsewhere (or if the user set MALLOC_MMAP_THRESHOLD_) nothing changes. Returns whether it applied."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
