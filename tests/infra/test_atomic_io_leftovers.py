"""A writer killed mid-publish leaves nothing behind for long.

A SIGKILL between atomic_dir's two renames used to leave the target missing (moved aside to
`.NAME.old-PID`) and `.NAME.tmp-*` folders that nothing removed. Now the next writer of that target
puts the previous version back and removes the leftovers of writers that are gone, while a live
writer's are kept. The kill is real: a subprocess SIGKILLs itself at the `publish` fault point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from components.config import REPO_ROOT
from components.infra import atomic_io
from components.infra.atomic_io import PUBLISH_FAULT, atomic_dir, atomic_write_text

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from components.infra.atomic_io import atomic_dir
    for version in ("v1", "v2"):  # the second publish is killed between its two renames
        with atomic_dir(Path(sys.argv[1])) as tmp:
            (tmp / "model.txt").write_text(version)
""")


def _killed_writer(target) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PIPO_FAULT": f"{PUBLISH_FAULT}@0"}
    env.pop("PIPO_FAULT_ONCE", None)
    out = subprocess.run([sys.executable, "-c", WRITER, str(target)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == -9, out.stderr  # SIGKILL


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    # tmp_path stands in for the repository, here and in the killed writer (a cwd with a params.yaml)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    monkeypatch.setattr(atomic_io, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "models"


def test_a_kill_between_the_renames_is_repaired_by_the_next_writer(outputs):
    target = outputs / "sft"
    _killed_writer(target)
    assert not target.exists()  # the kill came after the old version was moved aside
    assert any(n.startswith(".sft.old-") for n in _leftovers(outputs)), _leftovers(outputs)
    assert any(n.startswith(".sft.tmp-") for n in _leftovers(outputs)), _leftovers(outputs)
    with pytest.raises(RuntimeError):  # the next writer fails too: the previous version is back all the same
        with atomic_dir(target):
            raise RuntimeError("training diverged")
    assert (target / "model.txt").read_text() == "v1"
    assert _leftovers(outputs) == []


def test_the_next_successful_write_leaves_no_leftovers(outputs):
    target = outputs / "sft"
    _killed_writer(target)
    with atomic_dir(target) as tmp:
        (tmp / "model.txt").write_text("v3")
    assert (target / "model.txt").read_text() == "v3"
    assert _leftovers(outputs) == []


def test_a_live_writers_temporary_files_are_kept(outputs):
    outputs.mkdir()
    live = outputs / f".eval.json.tmp-{os.getpid()}-abc"  # this very process: alive
    live.write_text("half written")
    atomic_write_text(outputs / "eval.json", "{}")
    assert _leftovers(outputs) == [live.name]
