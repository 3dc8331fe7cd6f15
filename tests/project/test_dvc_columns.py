"""`dvc exp show` stays readable: a column per params.yaml leaf, per stage dep and per metric, so only the
method's settings are params (compare.yaml and advanced.yaml are no params files) and only the numbers
compared across runs are metrics. Measured on a throwaway git+DVC copy of dvc.yaml, dvc.lock and the
settings files, with metrics files written by the stages' own writers from full-size fake summaries.
Before the split (params.yaml holding compare: and the tuning knobs, every summary key a metric):
238 columns; after: 169, then 166 with the algorithms' published settings moved to their records
(components/config/algorithms/) and the new PIPO controls and guard settings added."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from components.config import REPO_ROOT
from components.eval.metrics import compared_metrics
from components.gate.promotion import compared_verdict

DVC = str(Path(sys.executable).with_name("dvc"))
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
MAX_COLUMNS = 175  # 166 measured (params, 36 deps, 24 metrics, 5 of DVC's own)
MAX_CHANGED = 40  # 26 measured: rl.lr, the 23 metrics that moved, 2 of DVC's own


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return out


def _write_metrics(repo: Path, shift: float) -> None:
    """The two metrics files as the evaluate and verify stages write them, from summaries of full size."""
    summary = {"pass@1": 0.5 + shift, "mean@4": 0.4 + shift, "pass@4": 0.6 + shift, "maj@4": 0.45 + shift,
               "mean_length": 28.9 + shift, "greedy_mean_length": 29.0 + shift, "num_problems": 500.0}
    results = {model: {"chain_sum": summary} for model in ("untrained", "sft", "rl")}
    comparison = {"diff": 0.2 + shift, "ci_low": 0.1 + shift, "ci_high": 0.3 + shift, "p_value": 1e-4 + shift,
                  "mcnemar_p": 1e-6 + shift, "passed": shift == 0}
    verdict = {"promoted": shift == 0, "score": "greedy", "num_problems": 500, "model_hash": "ab" * 32,
               "rl_vs_sft": comparison, "rl_vs_champion": comparison, "registered_version": 2 + int(shift * 10),
               "reused_version": False}
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics" / "eval.json").write_text(json.dumps(compared_metrics(results)))
    (repo / "metrics" / "verify.json").write_text(json.dumps(compared_verdict(verdict)))


def _columns(repo: Path, *flags: str) -> list[str]:
    done = subprocess.run([DVC, "exp", "show", "--csv", *flags], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()[0].split(",")


def test_dvc_exp_show_has_a_readable_number_of_columns(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", "advanced.yaml", "compare.yaml"):
        (repo / name).write_text((REPO_ROOT / name).read_text())
    _write_metrics(repo, 0.0)
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"], [*GIT, "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)

    columns = _columns(repo)
    print(f"dvc exp show: {len(columns)} columns")
    assert len(columns) <= MAX_COLUMNS, f"{len(columns)} columns: {columns}"
    assert not [c for c in columns if c.startswith("compare.")]
    advanced = set(_leaves(yaml.safe_load((REPO_ROOT / "advanced.yaml").read_text())))
    assert not advanced & set(columns), sorted(advanced & set(columns))

    # an experiment that changed one param (and so every result): a few dozen columns with --only-changed
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  lr: 1.0e-4", "  lr: 5.0e-5", 1))
    _write_metrics(repo, 0.01)
    changed = _columns(repo, "--only-changed")
    print(f"dvc exp show --only-changed: {len(changed)} columns")
    assert "rl.lr" in changed and len(changed) <= MAX_CHANGED, f"{len(changed)} columns: {changed}"
