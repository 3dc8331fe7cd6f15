"""Child processes of the flows: each started in its own session, stopped as a whole tree.

A child in its own session does not get the terminal's Ctrl-C: the parent forwards it (or SIGTERM)
itself, waits with a deadline, then kills what is left, so nothing outlives the flow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil  # a dependency of DVC's

STOP_GRACE_S = 20.0


def start(cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, start_new_session=True, **kwargs)


def stop_tree(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> None:
    """Send `sig` to proc's process group and to every descendant (some start their own groups),
    wait up to grace_s for all of them, then SIGKILL the survivors."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(sig)
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
