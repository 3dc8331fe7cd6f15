"""Fault injection for the crash-safety tests: a real SIGKILL at a named point of the RL stage.

PIPO_FAULT="POINT@ITERATION" (e.g. "rollout@3": right after iteration 3's rollout, mid-iteration;
"checkpoint@4": while checkpoint iter-000004 is half written). PIPO_FAULT_ONCE=FILE fires only if
FILE does not exist yet (and creates it), so a rerun or a Prefect retry runs through. Unset in
normal use: then this is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

FAULT_ENV = "PIPO_FAULT"
ONCE_ENV = "PIPO_FAULT_ONCE"


def maybe_fault(point: str, iteration: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec or spec != f"{point}@{iteration}":
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        marker = Path(once)
        if marker.exists():
            return
        marker.write_text(spec)
    os.kill(os.getpid(), signal.SIGKILL)
