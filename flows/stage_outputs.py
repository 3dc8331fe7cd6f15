"""A DVC stage's outputs, and putting them back after a stopped or failed run of the stage.

`dvc repro` deletes a stage's outputs before it runs the stage, which undoes the stage's own atomic
swap: a stage stopped (SIGTERM, Ctrl-C) or failed midway would leave none until `dvc checkout`. The
flow puts the last committed ones back: cached outputs from DVC's cache (`dvc checkout`, as dvc.lock
records them), uncached ones (the metrics files) from a copy taken before the run. It does so only
while holding the outputs' locks (components/infra/locks.py): a live writer's files are not touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import yaml

from components.config import REPO_ROOT
from components.infra.atomic_io import recover_leftovers
from components.infra.locks import LockHeldError, output_locks


def stage_outputs(stage: str, root: Path = REPO_ROOT) -> list[tuple[Path, bool]]:
    """(path, cached) of every out, metric and plot of `stage` in root/dvc.yaml."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]
    outs = []
    for kind in ("outs", "metrics", "plots"):
        for entry in spec.get(kind) or []:
            path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            outs.append((root / path, bool((opts or {}).get("cache", True))))
    return outs


@contextlib.contextmanager
def kept_outputs(stage: str, dvc: str, log: logging.Logger | logging.LoggerAdapter
                 ) -> Iterator[Callable[[], None]]:
    """For the length of one run of `stage`: copies of its uncached output files; yields restore()."""
    outs = stage_outputs(stage)
    with tempfile.TemporaryDirectory(prefix=f"pipo-{stage}-outputs-") as tmp:
        copies = {}
        for i, (path, cached) in enumerate(outs):
            if not cached and path.is_file():
                copies[path] = Path(shutil.copy2(path, Path(tmp) / f"{i}-{path.name}"))
        yield lambda: _restore(stage, outs, copies, dvc, log)


def _restore(stage: str, outs: list[tuple[Path, bool]], copies: dict[Path, Path], dvc: str, log) -> None:
    try:
        with output_locks(stage, [path for path, _ in outs]):
            for path, _ in outs:
                for leftover in recover_leftovers(path):
                    log.info("[%s] removed %s, left by the stopped stage", stage, leftover.name)
            missing = [str(path.relative_to(REPO_ROOT)) for path, cached in outs if cached and not path.exists()]
            if missing:
                done = subprocess.run([dvc, "checkout", "--quiet", *missing], cwd=REPO_ROOT, capture_output=True,
                                      text=True)
                if done.returncode:  # e.g. never committed: there is no previous version to put back
                    log.warning("[%s] could not restore %s from the DVC cache: %s", stage, ", ".join(missing),
                                (done.stderr or done.stdout).strip().splitlines()[-1:])
                else:
                    log.info("[%s] restored %s from the DVC cache", stage, ", ".join(missing))
            for path, copy in copies.items():
                if not path.exists():
                    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
                    shutil.copy2(copy, tmp)
                    os.replace(tmp, path)
                    log.info("[%s] restored %s", stage, path.relative_to(REPO_ROOT))
    except LockHeldError as exc:
        log.warning("[%s] outputs not restored: %s", stage, exc)
