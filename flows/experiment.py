"""A pipeline run with other settings, as a DVC experiment: `dvc exp run --temp -n NAME -S key=value ...`.

Why `--temp`: DVC runs the stages in a copy of the repository (.dvc/tmp/exps/...), so params.yaml and the
outputs in the working tree stay as they are while `dvc exp show` lists the run and `dvc exp apply NAME`
brings its params and outputs into the working tree. The copy holds what git tracks (with uncommitted
edits) and DVC's outputs; the user's untracked inputs (a data file, a reward file, a model folder) are
copied in with `-C`. Its MLflow runs go to the working tree's store (components/infra/tracking.py).

A preset becomes `-S` settings too (its leaves), so DVC records every changed param and reruns exactly
the stages that read one. A key of advanced.yaml (a tuning knob: speed, memory, logging, paths) is set
there, `-S advanced.yaml:rl.update_threads=2`: DVC edits that file in the experiment's copy, and since no
stage lists it, the change reruns nothing and adds no `dvc exp show` column.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable

from components.config import ADVANCED_NAME, REPO_ROOT, Config, ConfigError, load_yaml_text, read_yaml
from components.config.reward_functions import is_file_target

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # also a valid git ref component


def override_value(value: Any, where: str) -> str:
    """`value` in the override grammar DVC's `-S` parses (Hydra's): strings quoted, so a path or a
    "module.py:function" stays a string and never becomes a number, a bool or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        for quote in ("'", '"'):
            if quote not in value and not value.endswith("\\"):
                return f"{quote}{value}{quote}"
        raise ConfigError(f"{where}: {value!r} holds both quote characters (or ends with a backslash), "
                          "which DVC's -S cannot carry")
    if isinstance(value, list):
        return "[" + ", ".join(override_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {override_value(v, where)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{where}: a value of type {type(value).__name__} cannot be a param")


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """A preset's settings as (dotted key, value), as merge_preset applies them (a list is one value)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def set_params(overrides: list[str], presets: list[str], root: Path = REPO_ROOT) -> list[str]:
    """`-S` settings for DVC: the presets' leaves, then the overrides (so an override wins over a preset).
    The caller has validated them with load_config."""
    pairs: list[tuple[str, Any]] = []
    for preset in presets:
        path = Path(preset) if Path(preset).is_absolute() else root / preset
        pairs += list(_leaves(read_yaml(path, "preset")))
    for item in overrides:
        key, value = item.split("=", 1)
        pairs.append((key.strip(), load_yaml_text(value)))
    last = dict(pairs)  # one -S per key, the last value given (DVC refuses a key set twice)
    keys = list(dict.fromkeys(key for key, _ in pairs))
    advanced = dict(_leaves(read_yaml(root / ADVANCED_NAME, "advanced file")))
    return [f"{ADVANCED_NAME + ':' if key in advanced else ''}{key}={override_value(last[key], key)}" for key in keys]


def check_name(name: str, root: Path = REPO_ROOT) -> str:
    """The experiment name, refused early if DVC would refuse it (or overwrite another run's)."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"experiment name {name!r}: use letters, digits, '.', '_' and '-' (at most 100), "
                          "starting with a letter or digit")
    head = _git(["rev-parse", "HEAD"], root).strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    if subprocess.run(["git", "show-ref", "--verify", "--quiet", ref], cwd=root).returncode == 0:
        raise ConfigError(f"experiment {name!r} already exists for this commit ({head[:7]}): pass another "
                          "experiment name, or remove it with `dvc exp remove " + name + "`")
    return name


def _git(args: list[str], root: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise ConfigError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip() or proc.stdout.strip()} "
                          "(a DVC experiment needs a git repository with a commit)")
    return proc.stdout


def input_paths(cfg: Config) -> list[str]:
    """The user's inputs the stages read by path: data and eval files, file benchmarks, a model folder,
    reward files, as configured."""
    paths = [*cfg.data.files, *cfg.data.eval_files]
    paths += [b.file for b in cfg.eval.benchmarks if b.file]
    paths.append(cfg.model.name_or_path)
    for fn in cfg.reward.functions:
        target = fn.path.rpartition(":")[0]
        if is_file_target(target):
            paths.append(target)
    return [str(p) for p in paths]


def untracked_inputs(cfg: Config, root: Path = REPO_ROOT) -> list[str]:
    """Inputs inside the repository that exist but that git does not track: the experiment's copy of the
    repository would lack them (of a folder git tracks in part, its untracked entries). Paths outside it
    are read where they are."""
    found = []
    for raw in input_paths(cfg):
        path = Path(raw) if Path(raw).is_absolute() else root / raw
        if not path.exists() or not path.resolve().is_relative_to(root.resolve()):
            continue
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        if (root / f"{rel}.dvc").exists():
            continue  # DVC-tracked: the copy checks it out from the cache
        # without --exclude-standard, --others lists git-ignored files too. A folder: with --directory, an
        # untracked folder whole, else (models/base/, whose README git tracks) its untracked entries, since
        # DVC copies a folder with shutil.copytree, which fails over one the experiment's checkout has.
        listing = ["--directory", "-z"] if path.is_dir() else ["-z"]
        for entry in _git(["ls-files", "--others", *listing, "--", rel], root).split("\0"):
            entry = entry.rstrip("/")
            if entry and entry not in found:
                found.append(entry)
    return found


def exp_run_command(dvc: str, name: str, settings: list[str], copy_paths: list[str], stages: list[str],
                    force: bool) -> list[str]:
    cmd = [dvc, "exp", "run", "--temp", "-n", name]
    for setting in settings:
        cmd += ["-S", setting]
    for path in copy_paths:
        cmd += ["-C", path]
    return cmd + (["--force"] if force else []) + stages


def experiment_file(name: str, rel_path: str, root: Path = REPO_ROOT) -> dict | None:
    """A JSON file (a metrics file: git-tracked, so in the experiment's commit) as the experiment left it."""
    head = _git(["rev-parse", "HEAD"], root).strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    proc = subprocess.run(["git", "show", f"{ref}:{rel_path}"], cwd=root, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None
