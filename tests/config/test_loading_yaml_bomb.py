"""Hostile params files, presets and `--set` values end in a one-line ConfigError, fast.

A 335-byte "billion laughs" preset (8 levels of anchors, each alias repeating the previous level
9 times: 9**8 nodes) took 38 s to load, each extra level ~8x more, because the duplicate-key check
walked every alias again at every reference; a recursive alias or deep nesting crashed with a
traceback; `--preset` on a FIFO hung and on /dev/zero read until memory ran out. Now documents are
sized with aliases expanded (each distinct node counted once) and refused past MAX_NODES, and only
regular files of at most MAX_BYTES are read.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from components.config import DEFAULT_PARAMS, REPO_ROOT, ConfigError, load_config
from components.config.loading import MAX_BYTES, MAX_NODES


def _laughs(levels: int) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_preset_is_refused_fast_naming_the_file(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_laughs(8))  # 9**8 = 43 million nodes from 335 bytes
    assert len(bomb.read_bytes()) < 400
    started = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(presets=[bomb])
    elapsed = time.perf_counter() - started
    message = str(err.value)
    assert "\n" not in message and str(bomb) in message and f"more than {MAX_NODES} nodes" in message, message
    assert elapsed < 5, elapsed  # was 38 s on this machine; now a few ms


def test_billion_laughs_in_the_params_file_and_in_a_set_value(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(DEFAULT_PARAMS.read_text() + "laughs:\n" + "".join(f"  {line}\n" for line in
                                                                         _laughs(8).splitlines()))
    with pytest.raises(ConfigError, match=rf"params file {params}: it expands to more than"):
        load_config(params)
    flow = "{" + _laughs(8).strip().replace("\n", ", ") + "}"
    with pytest.raises(ConfigError, match=r"override 'rl\.pipo': the value is refused: it expands"):
        load_config(overrides=[f"rl.pipo={flow}"])


@pytest.mark.parametrize("value, expected", [
    ("&a [*a]", "recursive"),
    ("[" * 5000 + "]" * 5000, "nests too deeply"),
])
def test_recursive_or_deeply_nested_value_is_a_config_error(value, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(overrides=[f"rl.pipo.probe={value}"])
    assert "\n" not in str(err.value)


def test_params_file_over_the_size_limit_is_refused(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(DEFAULT_PARAMS.read_text() + "# padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=rf"params file {params} is larger than {MAX_BYTES} bytes"):
        load_config(params)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # an unbounded read fails here, not the machine


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_cli_refuses_a_preset_that_is_not_a_regular_file(kind, tmp_path):
    if kind == "fifo":
        preset = tmp_path / "preset.yaml"
        os.mkfifo(preset)  # nobody ever writes to it
    elif kind == "directory":
        preset = tmp_path
    else:
        preset = kind
    env = {k: v for k, v in os.environ.items() if k not in ("PIPO_PRESET", "PIPO_FAULT")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run([sys.executable, "-m", "components.cli", "prepare", "--preset", str(preset)],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=_limit_memory)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == f"error: preset {preset} is not a regular file", out.stderr
