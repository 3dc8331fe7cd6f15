"""components/rl/curves.py: the RL curves behind DVC's plots and the MLflow images cover every iteration,
also when the run resumed from a checkpoint (they are saved in it)."""

from __future__ import annotations

import csv

import pytest

from components.config import load_config
from components.model.factory import initial_policy
from components.rl.curves import write_curves_csv
from tests.support.rl import TINY, parity_rewards_on_one_thread, run_trainer

deterministic = pytest.fixture(autouse=True)(parity_rewards_on_one_thread)


def test_the_csv_has_a_row_per_iteration_and_gaps_where_nothing_was_logged(tmp_path):
    path = write_curves_csv([{"iteration": 0, "reward/mean": 0.25}, {"iteration": 1, "reward/mean": 0.5,
                                                                      "pipo/xi": -1.5}], tmp_path / "c.csv")
    rows = list(csv.DictReader(open(path)))
    assert rows == [{"iteration": "1", "reward_mean": "0.25", "reward_std": "", "pipo_xi": "", "probe_accuracy": ""},
                    {"iteration": "2", "reward_mean": "0.5", "reward_std": "", "pipo_xi": "-1.5", "probe_accuracy": ""}]


def test_a_resumed_run_keeps_the_curve_of_the_iterations_before_it(tmp_path):
    policy = initial_policy(load_config(overrides=TINY).model, seed=0)
    ckpt = tmp_path / "ckpt"
    _, first = run_trainer(policy, ["rl.checkpoint_every=2"], 4, checkpoint_dir=ckpt)
    _, resumed = run_trainer(policy, ["rl.checkpoint_every=2"], 6, checkpoint_dir=ckpt, resume=True)
    assert resumed.resumed_from == 4 and len(resumed.history) == 2
    assert [p["iteration"] for p in resumed.curve] == [0, 1, 2, 3, 4, 5]
    assert resumed.curve[:4] == first.curve
    assert all("reward/mean" in p for p in resumed.curve)
