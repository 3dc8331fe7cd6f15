"""The comparison harness's settings: compare.yaml, typed and validated like params.yaml.

`make compare` is no DVC stage, so its settings are not in params.yaml (where DVC would show each as a
column of every experiment and no stage would read them). The file's top-level key is `compare:`, so a
setting keeps its dotted name (`--set compare.seeds=[0,1]`, compare.control_regime in an error). The runs
themselves are configured by params.yaml and advanced.yaml (components/config/), with the same --preset
and --set as the stage CLI; split_overrides sends each --set to its file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from components.config import REPO_ROOT, Config, ConfigError, apply_overrides, read_yaml
from components.config.loading import format_errors
from components.config.paths import check_ownership, check_output_paths
from components.config.schema_base import Seed, _Strict

DEFAULT_COMPARE = REPO_ROOT / "compare.yaml"
SECTION = "compare"


class RegimeConfig(_Strict):
    overrides: list[str]  # rl. / rollout. / reward. keys on top of the variant's
    variants: list[str] = Field(min_length=1)  # names from compare.variants
    seeds: list[Seed] | None = Field(default=None, min_length=1)  # None: compare.seeds


class Comparison(_Strict):
    """One paired question of the report: `treatment` minus `reference`, in every regime that runs both."""

    treatment: str
    reference: str
    question: str  # what the difference answers, shown in the report


class CompareConfig(_Strict):
    seeds: list[Seed] = Field(min_length=1)
    iterations: int = Field(ge=1)  # RL iterations per run (a regime may set rl.iterations itself)
    jobs: int = Field(ge=1)  # units at once, one torch thread each
    overrides: list[str]  # applied to every RL run
    variants: dict[str, list[str]] = Field(min_length=1)
    regimes: dict[str, RegimeConfig] = Field(min_length=1)
    comparisons: list[Comparison]  # the report's paired tests beyond "every variant vs grpo"
    control: bool
    control_regime: str
    control_lr: float = Field(gt=0)
    out_dir: str
    report: str  # the committed report (markdown; its figures beside it in a folder of the same stem)

    @model_validator(mode="after")
    def _names(self) -> "CompareConfig":
        for key, seeds in [("compare.seeds", self.seeds)] + [(f"compare.regimes.{n}.seeds", r.seeds)
                                                              for n, r in self.regimes.items()]:
            twice = sorted({s for s in seeds or [] if (seeds or []).count(s) > 1})
            if twice:
                raise ValueError(f"{key}: seed(s) {twice} listed twice (a run per seed; list each once)")
        if self.control and self.control_regime not in self.regimes:
            raise ValueError(f"compare.control_regime {self.control_regime!r} is not a regime "
                             f"({', '.join(self.regimes)})")
        for name, regime in self.regimes.items():
            unknown = [v for v in regime.variants if v not in self.variants]
            if unknown:
                raise ValueError(f"compare.regimes.{name}.variants: unknown {unknown}; defined: {list(self.variants)}")
        for i, comp in enumerate(self.comparisons):
            unknown = [v for v in (comp.treatment, comp.reference) if v not in self.variants]
            if unknown:
                raise ValueError(f"compare.comparisons.{i}: unknown variant(s) {unknown}; defined: {list(self.variants)}")
        return self

    def regime_seeds(self, regime: str) -> list[int]:
        """The seeds a regime runs: its own list, or compare.seeds."""
        own = self.regimes[regime].seeds
        return list(own) if own is not None else list(self.seeds)

    def all_seeds(self) -> list[int]:
        """Every seed some regime runs (each gets an SFT start), in compare.seeds' order, then any others."""
        used = [s for r in self.regimes for s in self.regime_seeds(r)]
        return list(dict.fromkeys([*(s for s in self.seeds if s in used), *used]))


class CompareFile(_Strict):
    compare: CompareConfig


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the runs' overrides: params.yaml / advanced.yaml keys, the harness's: compare.* keys)."""
    mine = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] == SECTION]
    return [o for o in overrides if o not in mine], mine


def load_compare(path: str | Path | None = None, overrides: list[str] | None = None) -> CompareConfig:
    """compare.yaml (or `path`) with `compare.*` overrides applied; errors name the key and the file."""
    path = Path(path) if path else DEFAULT_COMPARE
    raw = apply_overrides(read_yaml(path, "compare file"), overrides or [])
    try:
        return CompareFile.model_validate(raw).compare
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, str(path))) from None


def check_compare_paths(cfg: Config, c: CompareConfig, params: str | Path, cwd: Path | None = None) -> None:
    """compare.out_dir must hold nothing else (no pipeline output, tracked file or project folder), and
    neither it nor compare.report's folder may be a user's folder outside the project (paths.py)."""
    cwd = (Path.cwd() if cwd is None else cwd).resolve()
    check_output_paths(cfg, params, cwd=cwd, extra={"compare.out_dir": c.out_dir})
    project = (cwd / params).resolve().parent
    check_ownership(cfg, project, cwd, {"compare.report": c.report}, ("compare.report",))


def portable_command(command: list[str], root: Path = REPO_ROOT) -> list[str]:
    """The command with this machine's folders out of it: paths in the repository relative to it, the
    temporary folder as $TMPDIR, the home folder as ~, wherever a path starts in an argument
    (`--set compare.report=/abs/path`, a list of paths)."""
    out = []
    for arg in command:
        # the repository first: it may lie in the temporary folder or the home folder
        for folder, name in ((root, "."), (Path(tempfile.gettempdir()), "$TMPDIR"), (Path.home(), "~")):
            for spelled in dict.fromkeys([str(folder), os.path.realpath(folder)]):
                spelled = spelled.rstrip("/")
                if not spelled:
                    continue
                # a path starts at the argument's start or after = : , [ { a quote or a space, and the
                # folder ends at / or where the path does (so /var/tmp and /tmpx are left alone)
                pattern = rf"(?<![^\s=:,\[{{'\"]){re.escape(spelled)}(/|(?=[\s,\]}}'\"]|$))"
                arg = re.sub(pattern, lambda m: (name + m.group(1)) if name != "." or not m.group(1) else "", arg)
        out.append(arg)
    return out
