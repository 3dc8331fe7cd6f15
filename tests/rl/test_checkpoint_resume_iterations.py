"""Lowering rl.iterations never returns a longer-trained model.

The iteration count is left out of the checkpoint fingerprint (raising it continues a run), so an
8-iteration run's checkpoints sit in the folder a 4-iteration rerun looks in. That rerun used to
"resume at iteration 8" and return the 8-iteration model while MLflow recorded 4. Now it resumes
from the newest checkpoint at or below 4 (or starts fresh), says which, and its result is exactly a
fresh 4-iteration run's weights.
"""

from __future__ import annotations

import logging

import pytest
import torch

from components.config import load_config
from components.model.factory import initial_policy
from tests.support.rl import TINY, parity_rewards_on_one_thread, run_trainer

deterministic = pytest.fixture(autouse=True)(parity_rewards_on_one_thread)


@pytest.fixture(scope="module")
def policy():
    return initial_policy(load_config(overrides=TINY).model, seed=0)


def run(policy, iterations: int, extra: list[str], checkpoint_dir=None, resume=False):
    return run_trainer(policy, extra, iterations, checkpoint_dir, resume)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("extra, used", [
    (["rl.checkpoint_every=2"], "iter-000004"),                             # 4, 6, 8 kept: 4 itself
    (["rl.checkpoint_every=3"], "iter-000003"),                             # 3, 6, 8 kept: 3, then one more
    (["rl.checkpoint_every=2", "rl.keep_checkpoints=1"], None),             # only 8 kept: start fresh
])
def test_a_lower_iteration_count_resumes_at_or_below_it(policy, tmp_path, caplog, extra, used):
    fresh4, _ = run(policy, 4, extra)  # uninterrupted, no checkpoints
    ckpt = tmp_path / "ckpt"
    long_model, long_run = run(policy, 8, extra, checkpoint_dir=ckpt)
    assert any(not torch.equal(v, fresh4.state_dict()[k]) for k, v in long_model.state_dict().items())

    with caplog.at_level(logging.INFO, logger="components.rl.trainer"):
        model, result = run(policy, 4, extra, checkpoint_dir=ckpt, resume=True)
    log = caplog.text
    assert "past rl.iterations=4" in log and "iter-000008" in log, log
    assert_same_weights(model, fresh4)
    assert result.iterations == 4
    if used is None:
        assert "no loadable checkpoint at or below iteration 4" in log and result.resumed_from == 0
        assert len(result.history) == 4
    else:
        assert f"resumed from {ckpt / used} at iteration {int(used[5:])}" in log, log
        assert result.resumed_from == int(used[5:]) and len(result.history) == 4 - int(used[5:])
    if used != "iter-000004":  # the rerun trained, so its final checkpoint is `latest`, and was not pruned
        assert (ckpt / "latest").read_text().strip() == "iter-000004"
        assert (ckpt / "iter-000004").is_dir()


def test_raising_the_iteration_count_still_continues_the_run(policy, tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    run(policy, 4, ["rl.checkpoint_every=2"], checkpoint_dir=ckpt)
    with caplog.at_level(logging.INFO, logger="components.rl.trainer"):
        _, result = run(policy, 6, ["rl.checkpoint_every=2"], checkpoint_dir=ckpt, resume=True)
    assert result.resumed_from == 4 and len(result.history) == 2
    assert "past rl.iterations" not in caplog.text
