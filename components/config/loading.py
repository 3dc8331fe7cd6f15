"""Loading params.yaml into a Config: YAML reading (a key given twice is an error naming it and its
line), presets merged in, `--set` overrides applied, validation errors formatted to name each key,
then the output-path checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.config.paths import DEFAULT_PARAMS, check_output_paths
from components.config.schema import Config, ConfigError


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
