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


def _exp_run(tmp_path: Path, setting: str) -> tuple[str, str]:
    """params.yaml before and after a real `dvc exp run -S setting` on a one-stage pipeline reading it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    before = (REPO_ROOT / "params.yaml").read_text()
    (repo / "params.yaml").write_text(before)
    (repo / "dvc.yaml").write_text("stages:\n  read:\n    cmd: echo read\n    params: [rl.iterations, seed]\n")
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"], [*GIT, "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    done = subprocess.run([DVC, "exp", "run", "-S", setting], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return before, (repo / "params.yaml").read_text()


def test_dvc_exp_run_changes_only_the_line_of_the_setting(tmp_path):
    before, after = _exp_run(tmp_path, "rl.iterations=7")
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  iterations: 300", "+  iterations: 7"], "\n".join(changed)


def test_the_file_as_dvc_writes_it_loads_to_the_same_config(tmp_path):
    before, after = _exp_run(tmp_path, "seed=0")
    assert after == before
    written = tmp_path / "params.yaml"
    written.write_text(after)
    assert load_config(written).model_dump() == load_config(REPO_ROOT / "params.yaml").model_dump()
