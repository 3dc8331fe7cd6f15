"""Atomic writes: a stage's output appears complete or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from components.config import REPO_ROOT


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            _fsync_path(path)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Files that mark a project (a repository, a DVC pipeline), never a stage's output folder.
PROJECT_MARKERS = (".git", ".dvc", "dvc.yaml", "params.yaml")


class UnsafeTargetError(ValueError):
    """atomic_dir was asked to replace a folder that is not a stage's own output."""


def check_replaceable(target: str | Path) -> None:
    """Refuse to replace the working directory, the repository, a folder above either, or a
    folder holding a project (a config check should have refused such a path already)."""
    resolved = Path(target).resolve()
    for what, root in (("the working directory", Path.cwd().resolve()), ("the repository root", REPO_ROOT)):
        if resolved == root or resolved in root.parents:
            raise UnsafeTargetError(f"refusing to replace {target}: it is {what} or a folder above it ({root})")
    found = [m for m in PROJECT_MARKERS if os.path.lexists(resolved / m)]
    if found:
        raise UnsafeTargetError(f"refusing to replace {target}: it holds {', '.join(found)}, "
                                "a project's files, not a stage's output")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` in one rename.

    Readers see the previous complete folder or the new complete one, never a mix; on failure
    the temporary folder is removed and a previous `target` is left (or put back) in place.
    Only a stage's own output folder is ever replaced (check_replaceable).
    """
    check_replaceable(target)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the published folder should not be
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            os.replace(target, old)  # a folder cannot be renamed over a non-empty one
        os.replace(tmp, target)
        _fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
