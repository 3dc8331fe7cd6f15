"""reward.functions: the user's reward functions, found and imported when the config is loaded.

An entry names a function as "file.py:name" (a regular .py file, relative to the params file's folder
and inside it, or an absolute path) or "package.module:name" (a module on the import path). Loading
resolves each file to its absolute path in the returned config, so every process that scores (the
scoring pool's workers, components/reward/worker.py) imports the same file through `load_function`.
A missing file, a module that fails to import, a missing or non-callable name: one ConfigError line
naming `reward.functions[i]`, before any stage runs.

Importing the file here is intended: it is the user's own code, named in their own params file
(model output is never imported or evaluated).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import stat
import sys
from pathlib import Path
from typing import Any, Callable

from components.config.schema import Config, ConfigError


def is_file_target(target: str) -> bool:
    """Whether the part before ':' names a file ("my_rewards.py", "rewards/x.py") rather than a module."""
    return target.endswith(".py") or "/" in target


def load_function(spec: str) -> Callable[..., Any]:
    """The callable `spec` ("/abs/file.py:name" or "package.module:name") names; ValueError saying why not.

    A file is imported once per process, as a module named after a hash of its path (so two files of
    the same name do not collide); a module through importlib.
    """
    target, _, name = spec.rpartition(":")
    try:
        module = _import_file(Path(target)) if is_file_target(target) else importlib.import_module(target)
    except Exception as exc:  # the user's module raised while importing: say what, on one line
        raise ValueError(f"importing {target} raised {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    if not hasattr(module, name):
        raise ValueError(f"{target} has no attribute {name!r}")
    function = getattr(module, name)
    if not callable(function):
        raise ValueError(f"{name!r} in {target} is a {type(function).__name__}, not a function")
    return function


def _import_file(path: Path) -> Any:
    module_name = "_pipo_reward_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it, as importlib's recipe does (dataclasses need it)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _resolve_file(target: str, project: Path) -> Path:
    """The absolute path of a file target; ValueError unless it is a regular .py file inside the project
    (or given as an absolute path)."""
    given = Path(target).expanduser()
    path = given.resolve() if given.is_absolute() else (project / given).resolve()
    if not given.is_absolute() and project not in path.parents:
        raise ValueError(f"{path} is outside the project ({project}); give an absolute path for a file elsewhere")
    if path.suffix != ".py":
        raise ValueError(f"{path} is not a .py file")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file")
    return path


def resolve_reward_functions(cfg: Config, params_path: str | Path) -> Config:
    """cfg with each reward.functions file made absolute, after importing every entry and checking that
    it names a callable (ConfigError naming the entry otherwise). cfg itself when there are none."""
    if not cfg.reward.functions:
        return cfg
    project = Path(params_path).resolve().parent
    resolved = []
    for i, entry in enumerate(cfg.reward.functions):
        target, _, name = entry.path.rpartition(":")
        try:
            spec = f"{_resolve_file(target, project)}:{name}" if is_file_target(target) else entry.path
            load_function(spec)
        except ValueError as exc:
            raise ConfigError(f"reward.functions[{i}] ({entry.path!r}): {exc}") from None
        resolved.append(entry.model_copy(update={"path": spec}))
    return cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"functions": resolved})})
