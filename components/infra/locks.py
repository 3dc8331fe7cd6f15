"""Advisory file locks (fcntl.flock): one writer per stage output, one registration per model.

DVC's own lock covers `dvc repro` only; `python -m components.cli STAGE` (and a stage called from
Python) takes these. A writer that finds an output locked is refused at once (LockHeldError, naming
the stage, the output and the holder's pid), never queued: two runs of one stage are a mistake.

A flock belongs to the open file, so the kernel drops it when the holder exits, however it exits
(SIGKILL included): there are no stale locks to clean up. The lock file stays, holding the last
holder's pid, which means nothing once the lock is free. flock is local to one machine (and not
reliable on NFS): two hosts writing one shared folder are not kept apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

from components.infra.atomic_io import make_parents


class LockHeldError(RuntimeError):
    """Another live process holds the lock."""


def lock_path(output: str | Path) -> Path:
    """The lock file of an output: a hidden sibling (`models/rl` -> `models/.rl.lock`), outside the
    output itself, which DVC deletes before it runs a stage."""
    p = Path(output).resolve()
    return p.with_name(f".{p.name}.lock")


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def file_lock(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing); `what` names the holder's work in
    the refusal. wait=True blocks until the lock is free instead of refusing."""
    make_parents(path.parent)  # as atomic_dir does: a folder created outside the project is marked the pipeline's
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeldError(f"{what}: locked by pid {_holder(fd)} (lock file {path}); wait for that process "
                                "to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


@contextlib.contextmanager
def output_locks(stage: str, outputs: Sequence[str | Path]) -> Iterator[None]:
    """Hold the lock of every output of `stage`, or raise LockHeldError for the first one held."""
    with contextlib.ExitStack() as stack:
        for out in sorted({str(Path(o).resolve()) for o in outputs}):
            stack.enter_context(file_lock(lock_path(out), f"stage {stage!r} cannot write {out}, another run "
                                                          "is writing it"))
        yield


def locked_stage(stage: str, outputs: Callable) -> Callable:
    """Decorate a stage's `run(cfg)` to hold its outputs' locks (outputs(cfg) lists them) for the
    whole run. Under `accelerate launch` only rank 0 takes them: the ranks of one run share them."""
    from components.infra.tracking import is_main_process

    def wrap(run: Callable) -> Callable:
        @functools.wraps(run)
        def locked(cfg, *args, **kwargs):
            if not is_main_process():
                return run(cfg, *args, **kwargs)
            with output_locks(stage, outputs(cfg)):
                return run(cfg, *args, **kwargs)

        return locked

    return wrap
