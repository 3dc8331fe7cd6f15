"""Atomic writes: a stage's output appears complete or not at all.

Only paths the pipeline may replace are ever replaced (components/config/ownership.py): inside
the project, or outside it a new or empty folder, or one it created and marked. A writer killed
mid-publish leaves `.NAME.tmp-PID-*` / `.NAME.old-PID` beside its target; the next writer of that
target removes them once PID is gone, putting the previous version back if the kill came between
the two renames.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from components.config import REPO_ROOT
from components.config.ownership import MARKER, MARKER_TEXT, REMEDY, in_project, owned, project_roots, refusal
from components.infra.faults import maybe_fault

# PIPO_FAULT=publish@0: a SIGKILL between atomic_dir's two renames (the target moved aside, the new one not yet in)
PUBLISH_FAULT = "publish"


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
    """atomic_dir or atomic_write_* was asked to replace something that is not the pipeline's own output."""


def _roots() -> tuple[Path, ...]:
    return project_roots(REPO_ROOT)  # read at call time: tests stand a sandbox in for the repository


def check_replaceable(target: str | Path) -> None:
    """Refuse to replace the working directory, the repository, a folder above either, a folder
    holding a project, or a non-empty folder outside the project the pipeline did not create
    (a config check should have refused such a path already)."""
    resolved = Path(target).resolve()
    for what, root in (("the working directory", Path.cwd().resolve()), ("the repository root", REPO_ROOT)):
        if resolved == root or resolved in root.parents:
            raise UnsafeTargetError(f"refusing to replace {target}: it is {what} or a folder above it ({root})")
    found = [m for m in PROJECT_MARKERS if os.path.lexists(resolved / m)]
    if found:
        raise UnsafeTargetError(f"refusing to replace {target}: it holds {', '.join(found)}, "
                                "a project's files, not a stage's output")
    why = refusal(resolved, _roots(), folder=True)
    if why:
        raise UnsafeTargetError(f"refusing to replace {target}: {why}; {REMEDY}")


def _mark(folder: Path) -> None:
    (folder / MARKER).write_text(MARKER_TEXT)


def _claimable(resolved: Path) -> bool:
    return not in_project(resolved, _roots()) and not owned(resolved)


def make_parents(folder: str | Path) -> None:
    """mkdir -p that marks the topmost folder it creates outside the project (so the pipeline may
    later replace what it writes there). Folders that already existed are never marked."""
    folder = Path(folder)
    resolved = folder.resolve()
    missing = [p for p in (resolved, *resolved.parents) if not os.path.lexists(p)]
    folder.mkdir(parents=True, exist_ok=True)
    if missing and _claimable(resolved):
        _mark(missing[-1])


def claim_dir(folder: str | Path) -> None:
    """Make `folder` the pipeline's own: like make_parents, and an existing empty folder outside the
    project is marked too (a folder a setting names, e.g. rl.checkpoint_dir, that the pipeline
    fills with several outputs and rewrites files in). A non-empty folder not the pipeline's is
    left unmarked: atomic_dir and atomic_write_text then refuse to replace what is in it."""
    folder = Path(folder)
    existed = folder.is_dir()
    make_parents(folder)
    resolved = folder.resolve()
    if existed and _claimable(resolved) and not any(resolved.iterdir()):
        _mark(resolved)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def recover_leftovers(target: str | Path) -> list[Path]:
    """Remove what killed writers of `target` left beside it; if one was killed between the two
    renames (`target` moved aside, the new one not in yet), put the previous `target` back first.
    Leftovers of a live writer (its PID still running) are kept. Returns what was removed or restored."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)(-.*)?$")
    found = []
    for entry in sorted(target.parent.iterdir()):
        match = pattern.match(entry.name)
        if match and not _alive(int(match[2])):
            if match[1] == "old" and not os.path.lexists(target):
                os.replace(entry, target)
            else:
                _remove(entry)
            found.append(entry)
    return found


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` in one rename.

    Readers see the previous complete folder or the new complete one, never a mix; on failure
    the temporary folder is removed and a previous `target` is left (or put back) in place.
    Only the pipeline's own output folder is ever replaced (check_replaceable); one it creates
    outside the project holds MARKER from the start (so a checkpoint's checksums cover it).
    """
    check_replaceable(target)
    target = Path(target)
    make_parents(target.parent)
    recover_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the published folder should not be
    resolved = target.resolve()
    if _claimable(resolved.parent):
        _mark(tmp)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            os.replace(target, old)  # a folder cannot be renamed over a non-empty one
            maybe_fault(PUBLISH_FAULT, 0)
        os.replace(tmp, target)
        _fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `path` via a temporary sibling and one rename; never over a file outside the project
    that the pipeline did not create."""
    path = Path(path)
    why = refusal(path, _roots(), folder=False)
    if why:
        raise UnsafeTargetError(f"refusing to overwrite {path}: {why}; {REMEDY}")
    claim_dir(path.parent)  # a metrics file's folder: rewritten on every run, so it must become the pipeline's
    recover_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
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
