"""Verifiable rewards: 1.0 when the completion's last \\boxed{} answer is correct, else 0.0.

The public scorer, for RL, evaluation, data validation and the verl and TRL adapters
(components.reward.adapters): `compute_score` in verl's convention, `score_items` for a batch. Both
bound every item by `reward.timeout_s`: items whose cost is bounded by construction
(`cost_is_bounded`) are scored inline, every other item (math, sympy-based reasoning-gym tasks) in
a worker process of a module-level ScoringPool (components.reward.pool), started on first need with
params.yaml's `reward` settings and killed past the timeout. verl and TRL call these in-process,
from any thread, so the bound has to live here: math-verify's signal-based timeouts work on the
main thread only, bound its parse and compare calls separately rather than the item, and cannot
stop a C-level big-integer operation. The routing itself (math-verify, reasoning-gym, registered
scorers) is components.reward.verify, which the pool's workers run, so nothing recurses.

The optional format term (`format_score`, `shaped_reward`) lives here too.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

from components.reward.extract import BOX_COMMANDS, as_text, last_box_span, reference_answers
from components.reward.gym import RG_PREFIX
from components.reward.gym_tasks import ACCEPTED_TASKS, NUMERIC_TASKS
from components.reward.math_equal import reference_refusal
from components.reward.pool import ScoringPool, batch_items
from components.reward.verify import (  # noqa: F401  (re-exported: the public names of the scorer)
    Scorer,
    cost_is_bounded,
    extra_scorer,
    register_scorer,
    score_and_error,
)

_pool: ScoringPool | None = None
_pool_lock = threading.Lock()


def scoring_pool() -> ScoringPool:
    """The pool behind compute_score and the adapters, made on first need from params.yaml's `reward`
    (its timeout_s; at least one worker, since callers score item by item). Workers start lazily and
    stop at exit; a forked child starts its own (ScoringPool handles the fork). It scores with the
    built-in verifiers only: reward.functions apply to the stages' pools (`pool_for`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from components.config import load_config

            reward = load_config().reward
            _pool = ScoringPool(max(reward.workers, 1), reward.timeout_s)
        return _pool


def score_items(
    sources: Sequence[str], completions: Sequence[Any], ground_truths: Sequence[Any],
    extra_infos: Sequence[dict | None] | None = None,
) -> list[float]:
    """One reward per completion, each bounded by reward.timeout_s (see the module docstring).

    Registered scorers (`register_scorer`) run inline: their cost is their author's, and a worker
    would not know them. Their exceptions propagate; a built-in verifier's error scores 0.0.
    """
    items = batch_items(sources, completions, ground_truths, extra_infos)
    results = [0.0] * len(items)
    pooled = []
    for i, item in enumerate(items):
        if extra_scorer(str(item[0])) is None:
            pooled.append(i)
        else:
            results[i] = score_and_error(*item)[0]
    if pooled:
        scores = scoring_pool().score(*(list(column) for column in zip(*(items[i] for i in pooled))))
        for i, value in zip(pooled, scores):
            results[i] = value
    return results


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None) -> float:
    """verl-style reward: 1.0 if the last boxed answer in `solution_str` matches `ground_truth`.

    `ground_truth` may be a string, a worked solution, or a list of acceptable answers. At most
    reward.timeout_s per call once the worker is up (a slower item scores 0.0 and is logged); never
    raises for built-in sources: a verifier error scores 0.0 and is logged.
    """
    return score_items([data_source], [solution_str], [ground_truth], [extra_info])[0]


def is_verifiable(data_source: str, ground_truth: str | None) -> bool:
    """Whether the verifier can use this reference answer: it must parse and match itself, and a
    numeric reasoning-gym task's answer must be a finite number ("NaN" and "Infinity" are not)."""
    answers = reference_answers(ground_truth)
    if not answers:
        return False
    if data_source.startswith(RG_PREFIX):
        task = data_source[len(RG_PREFIX) :]
        if task not in ACCEPTED_TASKS:
            return False
        if task in NUMERIC_TASKS:
            try:
                return all(Decimal(a.replace(",", "")).is_finite() for a in answers)
            except InvalidOperation:
                return False
        return True
    return compute_score(data_source, "\\boxed{" + answers[0] + "}", answers[0]) == 1.0


def reference_cost_refusal(data_source: str, ground_truth: Any) -> str | None:
    """Why the math verifier refuses a reference answer before comparing anything (juxtaposed
    numbers, a number too large to compute: see components.reward.guards), or None. Such a
    reference would score every completion 0.0, after costing each one the timeout."""
    if str(data_source).startswith(RG_PREFIX) or extra_scorer(str(data_source)) is not None:
        return None
    return next(filter(None, (reference_refusal(a) for a in reference_answers(ground_truth))), None)


# --- format and shaping -------------------------------------------------------------------------

_FORMAT_TAIL = re.compile(r"(?:\s|\$|\\\]|\\\)|\.|\*\*)*")


def format_score(solution_str: str) -> float:
    """1.0 when the completion ends with exactly one well-formed, non-empty final \\boxed{...}, else 0.0.

    Well-formed: one \\boxed (or \\fbox) in the whole text, with balanced braces and a non-blank
    argument. Final: after the box only whitespace, '.', '$', '\\]', '\\)' or '**' (closing math
    mode, a full stop or Markdown bold) may follow. It says nothing about correctness.
    """
    text = as_text(solution_str)
    if sum(text.count(cmd) for cmd in BOX_COMMANDS) != 1:
        return 0.0
    span = last_box_span(text)
    if span is None or not text[span[0] + 1 : span[1]].strip():
        return 0.0
    return 1.0 if _FORMAT_TAIL.fullmatch(text, span[1] + 1) else 0.0


def shaped_reward(
    correct: float, solution_str: str, *, correct_weight: float = 1.0, format_weight: float = 0.0
) -> float:
    """correct_weight * correct + format_weight * format_score(solution_str).

    With the defaults this is the plain verifiable reward; the format term is only computed when
    it has a weight.
    """
    reward = correct_weight * float(correct)
    if format_weight:
        reward += format_weight * format_score(solution_str)
    return reward
