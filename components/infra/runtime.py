"""Process-wide settings every entry point applies first: no telemetry, no hub, no noise, sane threads."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",  # MLflow accepts only the word "true"
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # tqdm bars ("Loading weights", "Writing model shards") are carriage-return redraws: one garbled
    # line per model load in a DVC or Prefect log. transformers reads this when it is imported.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # its "Downloading artifacts" bar, the same kind
}

# Loggers whose INFO is noise: great_expectations logs about 215 "Skipping registering function ..."
# lines from its import-time decorators, and its config dumps (the stray "[]" line of `prepare`).
# A module that sets its own level on import (GX's data_context.types.base sets INFO) is listed too:
# the filter quiet_logging adds to each logger outlives that.
QUIET_LOGGERS = ("great_expectations", "great_expectations.data_context.types.base")

# Warnings a user cannot act on, matched by category and the start of the message (regex). Narrow on
# purpose: anything else still prints.
NOISE_WARNINGS = (
    # MLflow, on registering our pyfunc: its predict takes the DataFrame or dict the caller hands it, by
    # design untyped; the message is wrapped in a terminal colour code, hence the leading ".*"
    (UserWarning, re.compile(r".*Add type hints to the `predict` method")),
    # setuptools' distutils shim, when a dependency imports distutils
    (UserWarning, re.compile(r"Setuptools is replacing distutils")),
)


def is_noise(message: Warning | str, category: type[Warning]) -> bool:
    return any(issubclass(category, c) and pattern.match(str(message)) for c, pattern in NOISE_WARNINGS)


def _drop_noise_warnings() -> None:
    """Drop NOISE_WARNINGS where warnings are shown, not in the filter list: MLflow wraps its check in
    `catch_warnings(); simplefilter("once", UserWarning)`, which puts its filter in front of any of ours."""
    show = warnings.showwarning
    if getattr(show, "drops_noise", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not is_noise(message, category):
            show(message, category, filename, lineno, file, line)

    showwarning.drops_noise = True
    warnings.showwarning = showwarning


def quiet_environment() -> None:
    """Set defaults without overriding what the user exported, then quiet_logging()."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_logging()


def quiet_logging() -> None:
    """Silence the known noise: QUIET_LOGGERS below WARNING, NOISE_WARNINGS, and transformers' progress
    bars if it was imported before HF_HUB_DISABLE_PROGRESS_BARS was set (importing nothing new)."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.addFilter(_warnings_and_above)  # a no-op when already there
    _drop_noise_warnings()
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1" and "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _warnings_and_above(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


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
    try:
        return bool(_libc().mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # no C library found, or one without mallopt
        return False


def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
