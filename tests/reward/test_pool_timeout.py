"""One completion cannot hang RL: every scoring path has reward.timeout_s.

RL batches (256 completions) used to be scored inline, where no deadline applies; these answers
pass the pre-filters and keep sympy busy for 6 s to well over 30 s (the first ones found, 9^{99}! and
(999*999)!, are now refused by the pre-filter's cost estimate). Through the trainer's own
scoring function and a pool built from params by `pool_for`, as every stage builds it, each now scores 0.0
within timeout_s plus a small constant and is counted as a timeout, while the rest of the batch is
scored as before.
"""

from __future__ import annotations

import inspect
import time
from types import SimpleNamespace

import pytest

from components.config import load_config
from components.eval.run import _score as eval_score
from components.eval.run import evaluate_policy
from components.rl.trainer import score_batch
from components.reward.extract import extract_boxed
from components.reward.guards import unsafe_reason
from components.reward.pool import ScoringPool, pool_for
from tests.support.hostile import HOSTILE

MATH = "lighteval/MATH"
CHAIN_SUM = "reasoning_gym/chain_sum"
TIMEOUT_S = 1.0
SLACK_S = 2.0  # killing the worker, and scoring the other 255 items (chain_sum, inline)
BATCH = 256
WHERE = 100  # the hostile completion's place in the batch


def _reward(*overrides: str):
    return load_config(overrides=[f"reward.timeout_s={TIMEOUT_S}", *overrides]).reward


def _trainer_pool(reward) -> ScoringPool:
    return pool_for(reward)  # as every stage builds it (RL, evaluate, verify, compare)


@pytest.fixture(scope="module")
def reward():
    return _reward()


@pytest.fixture(scope="module")
def pool(reward):
    with _trainer_pool(reward) as p:
        assert p.score([MATH], [r"\boxed{\frac12}"], ["0.5"]) == [1.0]  # workers up: start-up is not an item's cost
        yield p


def _chain_sum_batch(n: int) -> tuple[list[str], list[str], list[str], list[float]]:
    """n chain_sum completions, alternately right and wrong, as (sources, texts, answers, expected)."""
    answers = [str(i) for i in range(n)]
    texts = [f"{i}+0={i + i % 2} \\boxed{{{i + i % 2}}}" for i in range(n)]
    return [CHAIN_SUM] * n, texts, answers, [float(i % 2 == 0) for i in range(n)]


def _hostile_batch(completion: str):
    sources, texts, answers, expected = _chain_sum_batch(BATCH)
    sources[WHERE], texts[WHERE], answers[WHERE], expected[WHERE] = MATH, completion, "5", 0.0
    return sources, texts, answers, expected


def _timed_score_batch(pool, reward, sources, texts, answers):
    start = time.monotonic()
    rewards = score_batch(SimpleNamespace(texts=texts), sources, answers, pool, reward)
    return rewards.tolist(), time.monotonic() - start


def test_the_hostile_answers_pass_the_pre_filter():
    # Otherwise they would test the pre-filter, not the timeout: pick slower answers it lets through.
    assert [unsafe_reason(extract_boxed(c)) for c in HOSTILE] == [None] * len(HOSTILE)


def test_the_limit_is_a_param():
    assert load_config().reward.timeout_s > 0  # reward.timeout_s in params.yaml
    assert _reward().timeout_s == TIMEOUT_S


@pytest.mark.parametrize("completion", HOSTILE, ids=["four-roots", "three-roots-plus-one", "five-roots"])
def test_a_hanging_completion_in_an_rl_batch_scores_zero_within_the_timeout(completion, pool, reward):
    sources, texts, answers, expected = _hostile_batch(completion)
    pool.start()  # an earlier case's killed worker is replaced: its start-up is not this item's timeout
    before = pool.timeouts
    scores, elapsed = _timed_score_batch(pool, reward, sources, texts, answers)
    assert scores == expected
    assert pool.timeouts == before + 1  # what the trainer logs as reward/scoring_timeouts
    assert elapsed < TIMEOUT_S + SLACK_S, elapsed


def test_a_normal_batch_still_scores_right(pool, reward):
    sources, texts, answers, expected = _chain_sum_batch(BATCH)
    for i in range(0, BATCH, 5):  # every fifth item is a math answer, right or wrong
        sources[i], texts[i], answers[i] = (MATH, f"so \\boxed{{\\frac{{{2 * i + 1}}}{{2}}}}",  # lowest terms
                                             str((2 * i + 1) / 2 if i % 2 == 0 else i))
        expected[i] = float(i % 2 == 0)
    pool.start()  # workers killed by earlier tests replaced and ready
    before = (pool.timeouts, pool.crashes, pool.errors)
    scores, elapsed = _timed_score_batch(pool, reward, sources, texts, answers)
    assert scores == expected
    assert (pool.timeouts, pool.crashes, pool.errors) == before
    assert elapsed < SLACK_S, elapsed


def test_chain_sum_batches_never_start_a_worker(reward):
    with _trainer_pool(reward) as fresh:
        sources, texts, answers, expected = _chain_sum_batch(BATCH)
        scores, elapsed = _timed_score_batch(fresh, reward, sources, texts, answers)
        assert scores == expected and fresh.pids == []
        assert elapsed < 0.5, elapsed


@pytest.mark.slow
def test_without_standing_workers_a_hanging_completion_is_still_bounded():
    reward = _reward("reward.workers=0")
    with _trainer_pool(reward) as no_workers:
        sources, texts, answers, expected = _hostile_batch(HOSTILE[0])
        scores, elapsed = _timed_score_batch(no_workers, reward, sources, texts, answers)
        assert scores == expected
        assert no_workers.timeouts == 1
        assert no_workers.pids == []  # the batch's own worker went with it
        assert elapsed < TIMEOUT_S + no_workers.startup_timeout_s, elapsed


def test_evaluation_scoring_has_the_limit_too(pool):
    before = pool.timeouts
    start = time.monotonic()
    correct = eval_score(pool, [MATH] * 3, [HOSTILE[1], r"\boxed{5}", r"\boxed{6}"], ["5"] * 3)
    assert correct == [False, True, False]
    assert time.monotonic() - start < TIMEOUT_S + SLACK_S
    assert pool.timeouts == before + 1


def test_evaluation_has_no_scoring_path_of_its_own():
    # The caller's pool is required: no transient pool with a timeout of its own.
    assert inspect.signature(evaluate_policy).parameters["scorer"].default is inspect.Parameter.empty
    with pytest.raises(AttributeError):
        eval_score(None, [MATH], [r"\boxed{5}"], ["5"])
