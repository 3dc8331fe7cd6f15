"""params.yaml is written in the form DVC writes it: `dvc exp run -S key=value` in the working tree changes
that value's line and nothing else (no comments lost, no reformatting, `null`/`no`/lists as they were)."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from components.config import REPO_ROOT, load_config

DVC = str(Path(sys.executable).with_name("dvc"))
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def _exp_run(tmp_path: Path, setting: str, name: str = "params.yaml") -> tuple[str, str]:
    """The file `name` before and after a real `dvc exp run -S setting` on a one-stage pipeline reading
    params.yaml (advanced.yaml beside it, as in the project: no stage reads it)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    before = (REPO_ROOT / name).read_text()
    for other in ("params.yaml", "advanced.yaml"):
        (repo / other).write_text((REPO_ROOT / other).read_text())
    (repo / "dvc.yaml").write_text("stages:\n  read:\n    cmd: echo read\n    params: [rl.iterations, seed]\n")
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"], [*GIT, "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    done = subprocess.run([DVC, "exp", "run", "-S", setting], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return before, (repo / name).read_text()


def test_dvc_exp_run_changes_only_the_line_of_the_setting(tmp_path):
    before, after = _exp_run(tmp_path, "rl.iterations=7")
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  iterations: 300", "+  iterations: 7"], "\n".join(changed)


def test_dvc_exp_run_changes_only_the_line_of_an_advanced_setting(tmp_path):
    before, after = _exp_run(tmp_path, "advanced.yaml:rl.log_every=7", "advanced.yaml")
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert [line.split("#")[0].rstrip() for line in changed] == ["-  log_every: 10", "+  log_every: 7"], changed


def test_the_file_as_dvc_writes_it_loads_to_the_same_config(tmp_path):
    before, after = _exp_run(tmp_path, "seed=0")
    assert after == before
    written = tmp_path / "params.yaml"
    written.write_text(after)
    assert load_config(written).model_dump() == load_config(REPO_ROOT / "params.yaml").model_dump()
