"""Where the project is, the output-path checks run at load, and where the inputs DVC tracks by
folder must lie (benchmark files in data/benchmarks/, a local model folder in models/base/).

A stage replaces its output folder whole (components/infra/atomic_io.py's atomic_dir), so a setting
that points an output at a folder holding anything else (another stage's output, tracked data, the
repository itself) would delete it. Such settings are refused here, before any stage runs; so is an
output outside the project over anything the pipeline did not create (ownership.py).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from components.config.ownership import REMEDY, project_roots, refusal
from components.config.schema import Config, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]  # components/config/paths.py -> the repository root
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"
ADVANCED_NAME = "advanced.yaml"  # beside the params file (else the repository's): loading.py merges it in

OUTPUT_KEYS = ("data.out_dir", "sft.out_dir", "rl.out_dir", "rl.checkpoint_dir", "eval.out_dir",
               "eval.metrics_file", "verify.out_dir", "verify.metrics_file")
# Outputs written as files: outside the project their folder must be one the pipeline may claim.
# (The comparison harness's outputs, compare.out_dir and compare.report, are checked by
# components/compare/settings.py with check_extra_outputs.)
FILE_OUTPUTS = ("eval.metrics_file", "verify.metrics_file")
# Outputs at fixed paths: INIT_DIR, VALIDATION_DIR and RL_PLOTS_DIR in components/stages/common.py (a test keeps
# them in step).
FIXED_OUTPUTS = {"models/init (the sft stage's fixed output)": "models/init",
                 "reports/validation (the prepare stage's fixed output)": "reports/validation",
                 "reports/rl (the rl stage's fixed output)": "reports/rl"}


# Folders of the project (code, tracked data, the MLflow store, git and DVC metadata) that no
# output may equal or contain.
PROJECT_DIRS = (".git", ".dvc", "components", "flows", "tests", "configs", "presets", "docs", "scripts",
                "benchmarks", "data/benchmarks", "data/inputs", "mlflow", "rewards", "models/base")
# Benchmark files must lie here: this folder is a dvc.yaml dep of prepare, evaluate and verify, so an
# edit to a benchmark reruns them (a file elsewhere DVC would not see: eval.benchmarks is a list of
# entries with a file or a split, which dvc.yaml cannot template into deps).
BENCHMARK_DIR = "data/benchmarks"
# A local model folder (model.name_or_path) must lie here, for the same reason: this folder is a dvc.yaml
# dep of the stages that read the base model (prepare, sft, rl, evaluate), so an edit to its files reruns them.
BASE_MODEL_DIR = "models/base"
MODEL_SETTING = "model.name_or_path"


def _resolve(path: str | Path, base: Path) -> Path:
    """Absolute, with `..`, `.`, symlinks and trailing slashes resolved (the path need not exist)."""
    p = Path(path)
    return (p if p.is_absolute() else base / p).resolve()


def _at_or_above(path: Path, other: Path) -> bool:
    """path is other, or a folder that contains it."""
    return path == other or path in other.parents


@functools.lru_cache(maxsize=16)
def _git_tracked(root: str) -> tuple[str, ...]:
    """Files git tracks under root (empty when root is not in a git work tree)."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(f for f in out.stdout.decode(errors="replace").split("\0") if f)


@functools.lru_cache(maxsize=16)
def _dvc_outputs(dvc_file: str) -> frozenset[str]:
    """The outs, metrics and plots a dvc.yaml declares (stage outputs that git may track, e.g. metrics)."""
    try:
        stages = (yaml.safe_load(Path(dvc_file).read_text()) or {}).get("stages") or {}
        declared = set()
        for stage in stages.values():
            for section in ("outs", "metrics", "plots"):
                for entry in stage.get(section) or []:
                    declared.update([entry] if isinstance(entry, str) else list(entry))
        return frozenset(str(_resolve(p, Path(dvc_file).parent)) for p in declared)
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        return frozenset()


def _dotted(cfg: Config, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def check_output_paths(cfg: Config, params_path: str | Path, presets: list[Path] = (), cwd: Path | None = None,
                       extra: dict[str, str] | None = None, advanced: Path | None = None) -> None:
    """Refuse output paths that equal or contain another output, an input, tracked data, or the
    repository (ConfigError naming both keys, on one line), then outputs outside the project over
    what the pipeline did not create (check_ownership). Relative paths are taken from cwd, where
    the stages run. extra: more outputs (dotted key -> path; the comparison harness's), checked alike;
    advanced: the advanced file merged in, an input no output may replace."""
    cwd = (Path.cwd() if cwd is None else cwd).resolve()
    params_path = _resolve(params_path, cwd)
    project = params_path.parent
    extra = extra or {}
    values = {**{k: _dotted(cfg, k) for k in OUTPUT_KEYS}, **extra}
    outputs = {f"{k} ({v!r})": _resolve(v, cwd) for k, v in values.items()}
    outputs.update({label: _resolve(p, cwd) for label, p in FIXED_OUTPUTS.items()})
    roots = {"the working directory": cwd, "the repository root": REPO_ROOT.resolve(),
             "the params file's folder": project}
    inputs = _protected_inputs(cfg, params_path, presets, cwd, advanced)
    tracked, declared = _tracked_files([project, cwd])
    problems = _overlaps(outputs, roots, inputs, tracked, declared)
    if problems:
        raise ConfigError("output paths overlap: " + "; ".join(problems)
                          + " (a stage replaces its outputs whole, so each must hold nothing else)")
    check_ownership(cfg, project, cwd, extra)


def _protected_inputs(cfg: Config, params_path: Path, presets, cwd: Path, advanced: Path | None) -> dict[str, Path]:
    """What no output may be or contain, by label: the settings files, the project's own folders, the data."""
    project = params_path.parent
    inputs = {"the params file": params_path, **{f"preset {p}": _resolve(p, cwd) for p in presets}}
    if advanced is not None:
        inputs["the advanced file"] = _resolve(advanced, cwd)
    for name in ("dvc.yaml", "dvc.lock"):
        inputs[f"{project.name}/{name}"] = project / name
    # the project's own folders, protected even where git is absent (a copy without .git)
    for root in dict.fromkeys([project, REPO_ROOT.resolve()]):
        inputs.update({f"{name}/ (part of the project)": root / name for name in PROJECT_DIRS})
    inputs.update({f"data.files[{i}]": _resolve(f, cwd) for i, f in enumerate(cfg.data.files)})
    inputs.update({f"data.eval_files[{i}]": _resolve(f, cwd) for i, f in enumerate(cfg.data.eval_files)})
    inputs.update({f"eval.benchmarks[{i}].file": _resolve(b.file, cwd)
                   for i, b in enumerate(cfg.eval.benchmarks) if b.file})
    return inputs


def _tracked_files(roots: list[Path]) -> tuple[dict[Path, Path], set[str]]:
    """What git tracks under each root (a tracked file or one of its folders -> a tracked file there),
    and which paths DVC declares as stage outputs (metrics files, say)."""
    tracked: dict[Path, Path] = {}
    declared: set[str] = set()
    for root in dict.fromkeys(roots):
        declared |= _dvc_outputs(str(root / "dvc.yaml"))
        for rel in _git_tracked(str(root)):
            file = root / rel
            tracked.setdefault(file, file)
            for folder in Path(rel).parents:
                if folder != Path("."):
                    tracked.setdefault(root / folder, file)
    return tracked, declared


def _overlaps(outputs: dict[str, Path], roots: dict[str, Path], inputs: dict[str, Path],
              tracked: dict[Path, Path], declared: set[str]) -> list[str]:
    """Each way an output is a root, another output, an input or tracked by git, as a phrase."""
    problems = []
    names = list(outputs)
    for i, key in enumerate(names):
        path = outputs[key]
        for what, root in roots.items():
            if _at_or_above(path, root):
                problems.append(f"{key} is {what} or a folder above it ({root})")
                break
        else:
            for other in names[i + 1:]:
                if path == outputs[other]:
                    problems.append(f"{key} and {other} are the same path")
                elif _at_or_above(path, outputs[other]):
                    problems.append(f"{key} contains {other}")
                elif _at_or_above(outputs[other], path):
                    problems.append(f"{other} contains {key}")
            for what, input_path in inputs.items():
                if _at_or_above(path, input_path):
                    problems.append(f"{key} {'is' if path == input_path else 'contains'} {what}")
            if path in tracked and not (path == tracked[path] and str(path) in declared):
                problems.append(f"{key} {'is' if path == tracked[path] else 'contains'} "
                                f"a file git tracks ({tracked[path]})")
    return problems


def check_benchmark_files(cfg: Config, params_path: str | Path, cwd: Path | None = None) -> None:
    """Refuse a benchmark file outside data/benchmarks/ (of the project, or of cwd, where relative
    paths are taken from), naming the entry, on one line. Symlinks are not followed: a link placed
    in data/benchmarks/ to a file elsewhere is accepted (DVC hashes what it points to)."""
    cwd = Path(os.path.abspath(Path.cwd() if cwd is None else cwd))
    project = Path(os.path.abspath(cwd / params_path)).parent
    folders = {Path(os.path.abspath(root / BENCHMARK_DIR)) for root in (project, cwd)}
    for i, bench in enumerate(cfg.eval.benchmarks):
        if bench.file is None:
            continue
        path = Path(os.path.abspath(cwd / bench.file))
        if not any(folder in path.parents for folder in folders):
            raise ConfigError(f"eval.benchmarks[{i}].file ({bench.file!r}) is outside {BENCHMARK_DIR}/, the folder "
                              f"DVC tracks for prepare, evaluate and verify: copy or link the file into "
                              f"{BENCHMARK_DIR}/ and set the path there")


def check_model_folder(cfg: Config, params_path: str | Path, cwd: Path | None = None) -> None:
    """Refuse a local model folder outside models/base/ (of the project, or of cwd, where relative paths
    are taken from), or reached through a linked folder inside it, on one line naming model.name_or_path.
    Local as components/model/source.py's resolve decides: an existing folder. "tiny", a hub id and a
    missing path (resolve names it when a stage loads it) pass. models/base itself may be a link (DVC
    follows a dep's own path) and so may the files in it, but DVC skips a linked folder inside a dep."""
    name = cfg.model.name_or_path
    cwd = Path(os.path.abspath(Path.cwd() if cwd is None else cwd))
    path = Path(os.path.abspath(cwd / Path(name).expanduser()))
    if name == "tiny" or not path.is_dir():  # "tiny": components.model.factory.TINY, built, never read
        return
    project = Path(os.path.abspath(cwd / params_path)).parent
    fix = (f"move the folder into {BASE_MODEL_DIR}/, or link its files there (a folder elsewhere, e.g. on a "
           f"shared disk: mkdir {BASE_MODEL_DIR}/NAME && ln -s /abs/path/* {BASE_MODEL_DIR}/NAME/), and set "
           f"{MODEL_SETTING} to {BASE_MODEL_DIR}/NAME")
    roots = [Path(os.path.abspath(root / BASE_MODEL_DIR)) for root in (project, cwd)]
    root = next((r for r in roots if r == path or r in path.parents), None)
    if root is None:
        raise ConfigError(f"{MODEL_SETTING} ({name!r}) is a local folder outside {BASE_MODEL_DIR}/, the folder DVC "
                          f"tracks for the stages that read the model (prepare, sft, rl, evaluate): {fix}")
    linked = [p for p in (path, *path.parents) if root in p.parents and p.is_symlink()]
    if linked:
        raise ConfigError(f"{MODEL_SETTING} ({name!r}) goes through {linked[-1]}, a link to a folder, which DVC "
                          f"does not follow inside {BASE_MODEL_DIR}/ (edits there would rerun nothing): "
                          f"replace the link by a folder: {fix}")


def check_ownership(cfg: Config, project: Path, cwd: Path, extra: dict[str, str] | None = None,
                    extra_files: tuple[str, ...] = ()) -> None:
    """Refuse an output outside the project that would replace what the pipeline did not create
    (ownership.py): a folder key must name a new, empty or pipeline-made folder there, a file key
    a file in such a folder. extra: more folder outputs (dotted key -> path); extra_files: more file
    outputs, checked only here (a tracked report the overlap check would refuse)."""
    roots = project_roots(REPO_ROOT, cwd, [project])
    values = {**{k: _dotted(cfg, k) for k in OUTPUT_KEYS + FILE_OUTPUTS}, **(extra or {})}
    files = FILE_OUTPUTS + tuple(extra_files)
    problems = []
    for key, value in values.items():
        path = _resolve(value, cwd)
        why = refusal(path.parent, roots, folder=True) if key in files else refusal(path, roots, folder=True)
        if why:
            problems.append(f"{key} ({value!r}): {'its folder ' if key in files else ''}{why}")
    if problems:
        raise ConfigError("output paths not the pipeline's: " + "; ".join(problems) + f"; {REMEDY}")
