"""The public scorers verl and TRL call in-process are bounded by reward.timeout_s, from any thread.

compute_score, compute_shaped_score and trl_reward_func used to score in the caller's process with no
deadline: `\\boxed{9^{99}!}` and `(999*999*999)!` took 15 s each; the answers below pass the
pre-filter and took 6 s to over 30 s. Now every item that needs a deadline goes to a worker of the
module-level scoring pool (components.reward.score.scoring_pool), made from params.yaml's `reward`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from components.config import load_config
from components.reward.adapters import compute_shaped_score, trl_reward_func
from components.reward.score import compute_score, scoring_pool
from tests.support.hostile import HOSTILE
from tests.support.import_graph import closure, graph

MATH = "math"
SLACK_S = 2.0  # killing the worker and starting its replacement's process


@pytest.fixture
def timeout_s() -> float:
    pool = scoring_pool()
    # Every worker up (a previous test's killed one replaced): start-up is not an item's cost.
    deadline = time.monotonic() + pool.startup_timeout_s
    while True:
        assert trl_reward_func([r"\boxed{\frac12}"] * 2, ground_truth=["0.5"] * 2) == [1.0, 1.0]
        ready = len(pool.pids) == min(pool.num_workers, 2) and all(w.ready for w in pool._workers)
        if ready or time.monotonic() > deadline:
            break
    assert pool.timeout_s == load_config().reward.timeout_s  # params.yaml's, not a second default
    return pool.timeout_s


def _timed(call):
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


@pytest.mark.parametrize("completion", HOSTILE + [r"\boxed{9^{99}!}", r"\boxed{(999*999*999)!}"])
def test_compute_score_is_bounded(completion, timeout_s):
    score, elapsed = _timed(lambda: compute_score(MATH, completion, "5"))
    assert score == 0.0 and elapsed < timeout_s + SLACK_S, elapsed


def test_compute_shaped_score_is_bounded(timeout_s):
    score, elapsed = _timed(lambda: compute_shaped_score(MATH, HOSTILE[0], "5", format_weight=0.5))
    assert score == 0.5 and elapsed < timeout_s + SLACK_S, elapsed  # the format term only


def test_trl_reward_func_is_bounded_and_scores_the_rest(timeout_s):
    completions = [r"\boxed{5}", HOSTILE[1], [{"role": "assistant", "content": r"\boxed{6}"}], r"\boxed{5}"]
    scores, elapsed = _timed(lambda: trl_reward_func(completions, ground_truth=["5"] * 4))
    assert scores == [1.0, 0.0, 0.0, 1.0]
    assert elapsed < timeout_s + SLACK_S, elapsed


def test_compute_score_is_bounded_off_the_main_thread(timeout_s):
    # verl's reward loops may run in threads, where math-verify's signal-based timeouts cannot.
    out = []
    worker = threading.Thread(target=lambda: out.append(_timed(lambda: compute_score(MATH, HOSTILE[2], "5"))))
    worker.start()
    worker.join(timeout_s + SLACK_S + 5)
    assert out and out[0][0] == 0.0 and out[0][1] < timeout_s + SLACK_S, out


def test_the_pool_path_never_reaches_compute_score():
    # A scoring worker runs components.reward.verify; the pool module cannot import the scorer that uses it.
    _, edges = graph(Path(__file__).resolve().parents[2])
    assert "components.reward.score" not in closure(["components.reward.pool"], edges)
