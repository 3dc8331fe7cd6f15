"""Typed, validated configuration loaded from params.yaml (the single source of defaults).

No default lives here: every field is required, so a value missing from params.yaml is an
error rather than a silent second default. Unknown keys and wrong types raise ConfigError
naming the dotted key.
"""

from __future__ import annotations

import functools
import os
import subprocess
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"


class ConfigError(ValueError):
    """A params file or override is invalid; the message names the key."""


def _strict_number(annotation: Any, value: Any) -> str | None:
    """Why `value` is not acceptable for a field of type `annotation`, or None.

    Ints are strict (YAML's `true` or `4.0` is not an iteration count); a float field takes an
    int or a numeric string (YAML 1.1 reads `1e-4` as a string) but not a bool.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return _strict_number(get_args(annotation)[0], value)
    if annotation is int:
        if type(value) is not int:
            return f"must be an integer, not {type(value).__name__}"
    elif annotation is float:
        if isinstance(value, bool):
            return "must be a number, not bool"
    elif origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(annotation):
            return None
        numeric = [a for a in get_args(annotation) if a in (int, float)]
        if len(numeric) == 1:
            return _strict_number(numeric[0], value)
    elif origin is list and isinstance(value, list) and get_args(annotation):
        for item in value:
            why = _strict_number(get_args(annotation)[0], item)
            if why:
                return f"every item {why} (got {item!r})"
    return None


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field must be finite (`rl.lr: .inf` or `nan` is an error)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        why = _strict_number(cls.model_fields[info.field_name].annotation, value)
        if why:
            raise ValueError(why)
        return value


class TaskConfig(_Strict):
    name: Literal["chain_sum"]
    min_terms: int = Field(ge=2)
    max_terms: int = Field(ge=2)
    min_digits: int = Field(ge=1)
    max_digits: int = Field(ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> "TaskConfig":
        if self.max_terms < self.min_terms:
            raise ValueError("max_terms must be >= min_terms")
        if self.max_digits < self.min_digits:
            raise ValueError("max_digits must be >= min_digits")
        return self


class DataConfig(_Strict):
    source: Literal["reasoning_gym", "verl", "hf_local", "hf_hub"]
    task: TaskConfig
    num_sft: int = Field(ge=1)
    num_rl: int = Field(ge=1)
    num_eval: int = Field(ge=1)
    files: list[str]
    eval_files: list[str]
    hub_dataset: str | None
    hub_split: str
    out_dir: str

    @model_validator(mode="after")
    def _source_inputs(self) -> "DataConfig":
        if self.source in ("verl", "hf_local") and not self.files:
            raise ValueError(f"data.files must list at least one file when data.source is {self.source!r}")
        if self.source == "hf_hub" and not self.hub_dataset:
            raise ValueError("data.hub_dataset must name a dataset when data.source is 'hf_hub'")
        return self


class TinyModelConfig(_Strict):
    hidden_size: int = Field(ge=8)
    num_hidden_layers: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    intermediate_size: int = Field(ge=8)
    max_position_embeddings: int = Field(ge=16)

    @model_validator(mode="after")
    def _heads_divide(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        return self


class LoraConfig(_Strict):
    enabled: bool
    r: int = Field(ge=1)
    alpha: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    target_modules: list[str]


class ModelConfig(_Strict):
    name_or_path: str
    tiny: TinyModelConfig
    lora: LoraConfig
    dtype: Literal["float32", "bfloat16", "float16"]


class SFTConfig(_Strict):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    min_lr: float = Field(ge=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    out_dir: str


ALGORITHMS = ("grpo", "dr_grpo", "dapo", "gspo")


class PIPOConfig(_Strict):
    enabled: bool
    window: int
    neg_scale: float
    min_history: int | None  # null = window (K), the authors' default
    pi_lr_scale: float = Field(gt=0)
    pi_clip_mode: Literal["standard", "authors"]

    @model_validator(mode="after")
    def _ranges(self) -> "PIPOConfig":
        if self.window < 2:
            raise ValueError(f"rl.pipo.window must be >= 2 (got {self.window})")
        if not 0.0 <= self.neg_scale <= 1.0:
            raise ValueError(f"rl.pipo.neg_scale must be in [0, 1] (got {self.neg_scale})")
        if self.min_history is not None and not 1 <= self.min_history <= self.window:
            raise ValueError(f"rl.pipo.min_history must be in [1, window={self.window}] or null "
                             f"(got {self.min_history})")
        return self

    @property
    def history_needed(self) -> int:
        return self.window if self.min_history is None else self.min_history


class DAPOConfig(_Strict):
    dynamic_sampling: bool
    max_resample_rounds: int = Field(ge=0)
    overlong_buffer: int = Field(ge=0)
    overlong_penalty: float = Field(ge=0)


class RLConfig(_Strict):
    algorithm: str
    pipo: PIPOConfig
    dapo: DAPOConfig
    iterations: int = Field(ge=1)
    prompts_per_iteration: int = Field(ge=1)
    num_generations: int
    lr: float = Field(gt=0)
    epsilon: float = Field(gt=0)
    epsilon_high: float = Field(gt=0)
    beta: float = Field(ge=0)
    scale_rewards: bool
    mask_truncated_completions: bool
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_completion_length: int = Field(ge=1)
    ppo_epochs: int = Field(ge=1)
    mini_batch_size: int = Field(ge=1)
    max_grad_norm: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    checkpoint_every: int = Field(ge=1)
    keep_checkpoints: int = Field(ge=1)
    log_every: int = Field(ge=1)
    out_dir: str
    checkpoint_dir: str

    @model_validator(mode="after")
    def _known(self) -> "RLConfig":
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"rl.algorithm {self.algorithm!r} is unknown; allowed: {', '.join(ALGORITHMS)}")
        if self.num_generations < 2:
            raise ValueError("rl.num_generations must be >= 2 (group-relative advantages need a group)")
        return self


class VLLMConfig(_Strict):
    gpu_memory_utilization: float = Field(gt=0, le=1)
    max_num_seqs: int = Field(ge=1)
    enforce_eager: bool
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    cpu_kvcache_space_gib: int = Field(ge=1)


class ImportanceSamplingConfig(_Strict):
    enabled: bool
    cap: float = Field(ge=1.0)
    level: Literal["token", "sequence"]


class RolloutConfig(_Strict):
    engine: Literal["hf", "vllm"]
    recompute_logprobs: bool
    vllm: VLLMConfig
    importance_sampling: ImportanceSamplingConfig

    @property
    def trainer_logprobs(self) -> bool:
        """Whether old log-probs come from a trainer forward pass instead of the sampler.

        vLLM's kernels and precision differ from the trainer's, so its log-probs are only the
        behaviour policy's; the PPO ratio needs the trainer's own (the mismatch is then logged,
        and truncated importance sampling can correct for it).
        """
        return self.engine != "hf" or self.recompute_logprobs or self.importance_sampling.enabled


class RewardConfig(_Strict):
    correct_weight: float
    format_weight: float
    workers: int = Field(ge=0)
    timeout_s: float = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "min_batch_for_pool" in data:
            raise ValueError("reward.min_batch_for_pool was removed: whether an item is scored inline now "
                             "depends on its source, not on the batch size (see params.yaml); delete the key")
        return data


class BenchmarkConfig(_Strict):
    """One evaluation set: a prepared split of the task's own data, or a verl/HF-layout file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    split: Literal["eval", "rl", "sft"] | None = None
    file: str | None = None
    limit: int | None = Field(default=None, ge=1)  # first N problems (quick looks); null = all

    @model_validator(mode="after")
    def _one_source(self) -> "BenchmarkConfig":
        if (self.split is None) == (self.file is None):
            raise ValueError(f"benchmark {self.name!r} needs exactly one of split or file")
        return self


class EvalConfig(_Strict):
    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    num_samples: int = Field(ge=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "EvalConfig":
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"eval.benchmarks names must be unique (got {names})")
        return self
    temperature: float = Field(gt=0)
    max_completion_length: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    metrics_file: str
    out_dir: str


class VerifyConfig(_Strict):
    score: Literal["greedy", "mean_at_k"]  # per-problem score the paired test compares
    min_gain: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(gt=0.5, lt=1.0)
    num_resamples: int = Field(ge=100)
    against_champion: bool
    out_dir: str
    metrics_file: str


class RegistryConfig(_Strict):
    model_name: str = Field(min_length=1)
    alias: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")


class TrackingConfig(_Strict):
    experiment: str = Field(min_length=1)
    tracking_uri: str | None
    # Bounds on MLflow's HTTP client (MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES / _BACKOFF_FACTOR):
    # its defaults (120 s, 7 retries, backoff 2) stall a stage about 4 minutes per call on a dead server.
    request_timeout_s: int = Field(ge=1)
    max_retries: int = Field(ge=0, le=10)  # MLflow refuses more than 10
    backoff_factor: int = Field(ge=0, le=120)  # seconds; waits 0, 2b, 4b, ... between retries


# what numpy, torch and python's random all accept as a seed
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class CompareConfig(_Strict):
    seeds: list[Seed] = Field(min_length=1)
    variants: dict[str, list[str]]
    control: bool
    control_lr: float = Field(gt=0)
    out_dir: str


class Config(_Strict):
    seed: Seed
    data: DataConfig
    model: ModelConfig
    sft: SFTConfig
    rl: RLConfig
    rollout: RolloutConfig
    reward: RewardConfig
    eval: EvalConfig
    verify: VerifyConfig
    registry: RegistryConfig
    tracking: TrackingConfig
    compare: CompareConfig

    @model_validator(mode="after")
    def _completion_fits_context(self) -> "Config":
        # The tiny model's context is known here; an HF model's only once loaded (run_rl checks it).
        if self.model.name_or_path == "tiny":  # components.model.factory.TINY
            context = self.model.tiny.max_position_embeddings
            for key, value in (("rl.max_completion_length", self.rl.max_completion_length),
                               ("eval.max_completion_length", self.eval.max_completion_length)):
                if value >= context:
                    raise ValueError(f"{key} ({value}) leaves no room for a prompt in the model's context "
                                     f"(model.tiny.max_position_embeddings = {context}); it must be below that")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted-key view for MLflow params."""
        return _flatten(self.model_dump())


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"  {key}: missing")
        elif not e["loc"]:  # a check across sections: its message names the keys
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a params tree, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        dotted, value = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = raw
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"override {dotted!r}: {'.'.join(keys[: depth + 1])} is not a section")
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(f"override {dotted!r}: unknown key")
        try:
            node[keys[-1]] = _load_yaml_text(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_one_line(exc)})") from None
    return raw


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (PyYAML would silently keep the last)."""


def _check_duplicate_keys(node: yaml.Node | None, prefix: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if name in seen and name != "<<":
                raise DuplicateKeyError(f"duplicate key {prefix}{name} at line {line} "
                                        f"(first at line {seen[name]})")
            seen.setdefault(name, line)
            _check_duplicate_keys(value_node, f"{prefix}{name}.")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{prefix.rstrip('.')}[{i}].")


def _load_yaml_text(text: str) -> Any:
    """yaml.safe_load that refuses a key given twice in one mapping, naming it and its line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        _check_duplicate_keys(node)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _one_line(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.context + ': ' if exc.context else ''}{exc.problem}{where}"
    return " ".join(str(exc).split())


PRESET_ENV = "PIPO_PRESET"


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = _load_yaml_text(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except DuplicateKeyError as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return raw


def merge_preset(raw: dict[str, Any], preset: dict[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """Deep-merge a preset (a partial params tree) into raw; a key params.yaml lacks is an error."""
    for key, value in preset.items():
        dotted = f"{prefix}{key}"
        if key not in raw:
            raise ConfigError(f"preset {source}: {dotted}: unknown key")
        if isinstance(value, dict) and isinstance(raw[key], dict):
            merge_preset(raw[key], value, source, dotted + ".")
        else:
            raw[key] = value
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                presets: list[str | Path] | None = None) -> Config:
    """Load and validate params.yaml (or `path`), then presets (partial params files, e.g.
    presets/gpu.yaml; also from $PIPO_PRESET, comma-separated), then dotted overrides."""
    path = Path(path) if path else DEFAULT_PARAMS
    raw = _read_yaml(path, "params file")
    if presets is None:
        presets = [p for p in os.environ.get(PRESET_ENV, "").split(",") if p.strip()]
    preset_paths = []
    for preset in presets:
        preset_path = Path(preset) if Path(preset).is_absolute() else path.parent / preset
        merge_preset(raw, _read_yaml(preset_path, "preset"), str(preset_path))
        preset_paths.append(preset_path)
    apply_overrides(raw, overrides or [])
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path))) from None
    check_output_paths(cfg, path, preset_paths)
    return cfg


# ---- output paths -----------------------------------------------------------------------
#
# A stage replaces its output folder whole (io_utils.atomic_dir), so a setting that points an
# output at a folder holding anything else (another stage's output, tracked data, the repository
# itself) would delete it. Such settings are refused here, before any stage runs.

OUTPUT_KEYS = ("data.out_dir", "sft.out_dir", "rl.out_dir", "rl.checkpoint_dir", "eval.out_dir",
               "eval.metrics_file", "verify.out_dir", "verify.metrics_file", "compare.out_dir")
# Outputs at fixed paths: components/stages.py's INIT_DIR and VALIDATION_DIR (a test keeps them in step).
FIXED_OUTPUTS = {"models/init (the sft stage's fixed output)": "models/init",
                 "reports/validation (the prepare stage's fixed output)": "reports/validation"}


# Folders of the project (code, tracked data, the MLflow store, git and DVC metadata) that no
# output may equal or contain.
PROJECT_DIRS = (".git", ".dvc", "components", "flows", "tests", "configs", "presets", "docs", "scripts",
                "benchmarks", "data/benchmarks", "mlflow")


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


def check_output_paths(cfg: Config, params_path: str | Path, presets: list[Path] = (), cwd: Path | None = None) -> None:
    """Refuse output paths that equal or contain another output, an input, tracked data, or the
    repository: ConfigError naming both keys, on one line. Relative paths are taken from cwd,
    where the stages run."""
    cwd = Path.cwd() if cwd is None else cwd
    cwd = cwd.resolve()
    params_path = _resolve(params_path, cwd)
    project = params_path.parent
    outputs = {f"{k} ({_dotted(cfg, k)!r})": _resolve(_dotted(cfg, k), cwd) for k in OUTPUT_KEYS}
    outputs.update({label: _resolve(p, cwd) for label, p in FIXED_OUTPUTS.items()})
    roots = {"the working directory": cwd, "the repository root": REPO_ROOT.resolve(),
             "the params file's folder": project}
    inputs = {"the params file": params_path, **{f"preset {p}": _resolve(p, cwd) for p in presets}}
    for name in ("dvc.yaml", "dvc.lock"):
        inputs[f"{project.name}/{name}"] = project / name
    # the project's own folders, protected even where git is absent (a copy without .git)
    for root in dict.fromkeys([project, REPO_ROOT.resolve()]):
        inputs.update({f"{name}/ (part of the project)": root / name for name in PROJECT_DIRS})
    inputs.update({f"data.files[{i}]": _resolve(f, cwd) for i, f in enumerate(cfg.data.files)})
    inputs.update({f"data.eval_files[{i}]": _resolve(f, cwd) for i, f in enumerate(cfg.data.eval_files)})
    inputs.update({f"eval.benchmarks[{i}].file": _resolve(b.file, cwd)
                   for i, b in enumerate(cfg.eval.benchmarks) if b.file})
    # what git tracks, and which of it DVC declares as stage outputs (metrics files, say)
    tracked: dict[Path, Path] = {}  # tracked file or one of its folders -> a tracked file there
    declared: set[str] = set()
    for root in dict.fromkeys([project, cwd]):
        declared |= _dvc_outputs(str(root / "dvc.yaml"))
        for rel in _git_tracked(str(root)):
            file = root / rel
            tracked.setdefault(file, file)
            for folder in Path(rel).parents:
                if folder != Path("."):
                    tracked.setdefault(root / folder, file)

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
    if problems:
        raise ConfigError("output paths overlap: " + "; ".join(problems)
                          + " (a stage replaces its outputs whole, so each must hold nothing else)")
