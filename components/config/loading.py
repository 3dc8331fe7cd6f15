"""Loading params.yaml and advanced.yaml into a Config: YAML reading (a key given twice is an error
naming it and its line; regular files of at most MAX_BYTES; at most MAX_NODES nodes with aliases
expanded), advanced.yaml deep-merged into the params tree (a key in both files is an error), presets
merged in, `--set` overrides applied, validation errors formatted to name each key, then the
output-path checks, where benchmark files and a local model folder lie (paths.py), and the user's reward
functions (reward_functions.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.config.paths import (ADVANCED_NAME, DEFAULT_PARAMS, REPO_ROOT, check_benchmark_files,
                                     check_model_folder, check_output_paths)
from components.config.reward_functions import resolve_reward_functions
from components.config.schema import Config, ConfigError


def format_errors(err: ValidationError, source: str) -> str:
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
            node[keys[-1]] = load_yaml_text(value)
        except TooLargeError as exc:
            raise ConfigError(f"override {dotted!r}: the value is refused: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_one_line(exc)})") from None
    return raw


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (PyYAML would silently keep the last)."""


class TooLargeError(yaml.YAMLError):
    """The document expands to more nodes than any params file needs (an alias bomb), or nests too deep."""


# A params file is a few hundred nodes. YAML aliases let a few hundred bytes stand for billions
# ("billion laughs": each level repeats the previous one 9 times), which every walk over the
# tree (the duplicate-key check, the constructor, validation) would pay for.
MAX_NODES = 100_000
MAX_BYTES = 1 << 20  # params files and presets: read no more than this, and only regular files


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_size(node: yaml.Node) -> None:
    """Count the nodes with every alias expanded (an alias is the node it names, so sizes are
    memoised per node: each distinct node is visited once) and stop past MAX_NODES."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in open_nodes:
            raise TooLargeError("an alias names a node that contains it (a recursive document)")
        open_nodes.add(id(n))
        total = 1
        for child in _children(n):
            total += size(child)
            if total > MAX_NODES:
                raise TooLargeError(f"it expands to more than {MAX_NODES} nodes (aliases repeating nodes "
                                    "many times over: a 'billion laughs' document?)")
        open_nodes.discard(id(n))
        sizes[id(n)] = total
        return total

    size(node)


def _check_duplicate_keys(node: yaml.Node | None, prefix: str = "", seen_nodes: set[int] | None = None) -> None:
    # each distinct node once: an alias is the node it names, already checked at its anchor
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if node is None or id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if name in seen and name != "<<":
                raise DuplicateKeyError(f"duplicate key {prefix}{name} at line {line} "
                                        f"(first at line {seen[name]})")
            seen.setdefault(name, line)
            _check_duplicate_keys(value_node, f"{prefix}{name}.", seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{prefix.rstrip('.')}[{i}].", seen_nodes)


def load_yaml_text(text: str) -> Any:
    """yaml.safe_load that refuses a key given twice in one mapping (naming it and its line) and a
    document past MAX_NODES with its aliases expanded, before anything walks the expanded tree."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        _check_duplicate_keys(node)
        return loader.construct_document(node)
    except RecursionError:
        raise TooLargeError("it nests too deeply") from None
    finally:
        loader.dispose()


def _one_line(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.context + ': ' if exc.context else ''}{exc.problem}{where}"
    return " ".join(str(exc).split())


PRESET_ENV = "PIPO_PRESET"


def _read_text(path: Path, what: str) -> str:
    """The file's text, refusing anything but a regular file of at most MAX_BYTES (a FIFO would
    block, /dev/zero never ends); O_NONBLOCK so that opening a FIFO cannot wait for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        data = b""
        while len(data) <= MAX_BYTES and (block := os.read(fd, MAX_BYTES + 1 - len(data))):
            data += block
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_BYTES} bytes; a params file is a few kB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    text = _read_text(path, what)
    try:
        raw = load_yaml_text(text)
    except (DuplicateKeyError, TooLargeError) as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return raw


def merge_preset(raw: dict[str, Any], preset: dict[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """Deep-merge a preset (a partial params tree) into raw; a key params.yaml and advanced.yaml lack is an error."""
    for key, value in preset.items():
        dotted = f"{prefix}{key}"
        if key not in raw:
            raise ConfigError(f"preset {source}: {dotted}: unknown key (not in params.yaml or advanced.yaml)")
        if isinstance(value, dict) and isinstance(raw[key], dict):
            merge_preset(raw[key], value, source, dotted + ".")
        else:
            raw[key] = value
    return raw


def merge_advanced(raw: dict[str, Any], advanced: dict[str, Any], params: Path, source: Path,
                   prefix: str = "") -> dict[str, Any]:
    """Deep-merge advanced.yaml's tree (the same nesting as params.yaml) into raw; a key set in both
    files is an error naming it and both files (one value per key: no silent precedence)."""
    for key, value in advanced.items():
        dotted = f"{prefix}{key}"
        if key not in raw:
            raw[key] = value
        elif isinstance(value, dict) and isinstance(raw[key], dict):
            merge_advanced(raw[key], value, params, source, dotted + ".")
        else:
            raise ConfigError(f"{dotted} is set in both {params} and {source}: keep it in one of them "
                              "(method settings in the params file, speed/memory/logging/paths in advanced.yaml)")
    return raw


def advanced_path(params: Path) -> Path:
    """The advanced file merged into `params`: the one beside it, else the repository's (a params file
    elsewhere, e.g. a copy in a test's folder, keeps the project's tuning knobs)."""
    beside = params.parent / ADVANCED_NAME
    return beside if beside.exists() else REPO_ROOT / ADVANCED_NAME


def load_params_tree(path: str | Path | None = None) -> tuple[dict[str, Any], Path, Path]:
    """(params.yaml with advanced.yaml merged in, the params path, the advanced path): the tree presets
    and overrides apply to."""
    path = Path(path) if path else DEFAULT_PARAMS
    raw = read_yaml(path, "params file")
    advanced = advanced_path(path)
    return merge_advanced(raw, read_yaml(advanced, "advanced file"), path, advanced), path, advanced


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                presets: list[str | Path] | None = None) -> Config:
    """Load and validate params.yaml (or `path`) with advanced.yaml merged in, then presets (partial
    params files, e.g. presets/gpu.yaml; also from $PIPO_PRESET, comma-separated), then dotted overrides."""
    raw, path, advanced = load_params_tree(path)
    if presets is None:
        presets = [p for p in os.environ.get(PRESET_ENV, "").split(",") if p.strip()]
    preset_paths = []
    for preset in presets:
        preset_path = Path(preset) if Path(preset).is_absolute() else path.parent / preset
        merge_preset(raw, read_yaml(preset_path, "preset"), str(preset_path))
        preset_paths.append(preset_path)
    apply_overrides(raw, overrides or [])
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, f"{path} (with {advanced})")) from None
    check_output_paths(cfg, path, preset_paths, advanced=advanced)
    check_benchmark_files(cfg, path)
    check_model_folder(cfg, path)
    return resolve_reward_functions(cfg, path)
