"""Test-only scorers for the scoring pool, registered under "hook/" wherever this module is imported.

ScoringPool(extra_scorers_module="tests.support.scoring_hooks") imports it in every worker too, so a test
can make one item hang, crash or raise inside a worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Any

from components.reward.score import register_scorer

PREFIX = "hook/"


def _hang() -> float:
    while True:
        time.sleep(60)


def _segfault() -> float:
    ctypes.string_at(0)  # reads address 0: SIGSEGV
    return 0.0


def _raise() -> float:
    raise RuntimeError("a scorer bug")


BEHAVIOURS = {
    "hang": _hang,
    "exit": lambda: os._exit(13),
    "sigkill": lambda: os.kill(os.getpid(), signal.SIGKILL),
    "segfault": _segfault,
    "raise": _raise,
    "pid": lambda: float(os.getpid()),
    "torch-free": lambda: float("torch" not in sys.modules),
}


def _score(data_source: str, text: str, truth: Any, extra_info: dict | None) -> float:
    return BEHAVIOURS[data_source[len(PREFIX) :]]()


register_scorer(PREFIX, _score)
