"""Which paths outside the project the pipeline may replace: only what it created itself.

A stage replaces its output folder whole and overwrites its metrics files
(components/infra/atomic_io.py). Inside the project (the repository, the params file's folder, a
working directory holding a params.yaml) the overlap checks in paths.py decide. Outside it, a path
may be replaced only when it is missing, an empty folder, or under a folder holding MARKER: the
pipeline writes that file into every folder it creates out there, so a user's folder (`../victim`,
/etc, $HOME) is never emptied and a user's file (~/.bashrc) never overwritten.

Both the config check at load (paths.py) and atomic_io (the last line of defence) use these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

MARKER = ".pipo-output"
MARKER_TEXT = "Created by the pipeline (components/infra/atomic_io.py); it may replace this folder's contents.\n"
# What a stage needs to know to fix a refused path, appended to each refusal.
REMEDY = f"choose a new or empty folder (the pipeline marks it with {MARKER}) or one inside the repository"


def project_roots(repo_root: Path, cwd: Path | None = None, extra: Iterable[Path] = ()) -> tuple[Path, ...]:
    """The repository, any `extra` folder (the params file's), and cwd when it holds a params.yaml."""
    cwd = (Path.cwd() if cwd is None else cwd).resolve()
    roots = [Path(repo_root).resolve(), *(Path(p).resolve() for p in extra)]
    if (cwd / "params.yaml").is_file():
        roots.append(cwd)
    return tuple(dict.fromkeys(roots))


def in_project(path: Path, roots: Iterable[Path]) -> bool:
    """path (resolved) is a root or inside one."""
    return any(path == root or root in path.parents for root in roots)


def owned(path: Path) -> bool:
    """path (resolved) or a folder above it holds MARKER: the pipeline created it."""
    return any((folder / MARKER).is_file() for folder in (path, *path.parents))


def _is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:  # unreadable: treat as holding something
        return False


def refusal(path: str | Path, roots: Iterable[Path], folder: bool) -> str | None:
    """Why the pipeline may not replace `path` (a folder when `folder`, else a file), or None.

    Symlinks are resolved first: a link inside the repository to a folder outside it is judged by
    where it leads.
    """
    resolved = Path(path).resolve()
    if in_project(resolved, roots) or owned(resolved) or not os.path.lexists(resolved):
        return None
    if folder and resolved.is_dir() and _is_empty_dir(resolved):
        return None
    what = "a folder holding files" if resolved.is_dir() else "a file"
    return f"{resolved} is {what} the pipeline did not create, outside the project (no {MARKER} in it or above it)"
