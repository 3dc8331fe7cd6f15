"""dvc.yaml's `plots:` render with the real `dvc plots show`: the RL curves from the file the rl stage
writes (components/rl/curves.py) and the evaluation table from the evaluate stage's summary.csv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from components.config import REPO_ROOT
from components.rl.curves import write_curves_csv

DVC = str(Path(sys.executable).with_name("dvc"))


def test_dvc_plots_show_renders_the_rl_curves_and_the_eval_table(tmp_path):
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    write_curves_csv([{"iteration": i, "reward/mean": i / 10, **({"pipo/xi": 0.5} if i >= 2 else {})}
                      for i in range(5)], tmp_path / "reports" / "rl" / "curves.csv")
    (tmp_path / "reports" / "eval").mkdir(parents=True)
    (tmp_path / "reports" / "eval" / "summary.csv").write_text(
        "model,benchmark,pass@1\nuntrained,chain_sum,0.0\nsft,chain_sum,0.642\nrl,chain_sum,0.866\n")
    shown = subprocess.run([DVC, "plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    plots = json.loads(shown.stdout)["data"]
    assert set(plots) == {"rl_reward", "pipo_xi", "eval_pass_at_1"}
    reward = plots["rl_reward"][0]["content"]["data"]["values"]
    assert [(r["iteration"], r["reward_mean"]) for r in reward] == [("1", "0"), ("2", "0.1"), ("3", "0.2"),
                                                                    ("4", "0.3"), ("5", "0.4")]
    bars = plots["eval_pass_at_1"][0]["content"]["data"]["values"]
    assert {r["model"]: r["pass@1"] for r in bars} == {"untrained": "0.0", "sft": "0.642", "rl": "0.866"}
