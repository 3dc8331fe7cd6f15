"""Verifiable rewards: 1.0 when the completion's last \\boxed{} answer is correct, else 0.0.

One scorer for RL, evaluation and data validation: `compute_score` routes a data_source to its
verifier. Math goes through math-verify (components.reward.math_equal, behind the pre-filter in
components.reward.guards); reasoning-gym tasks use the task's own scorer, with a fast exact path for
chain_sum (components.reward.gym); registered scorers (`register_scorer`) come first. The optional
format term (`format_score`, `shaped_reward`) lives here too; verl and TRL adapters are in
components.reward.adapters.

Model output is only ever parsed, never evaluated as Python: math answers go through math-verify's
LaTeX parser only, and a reasoning-gym task is scored only if it is on one of the two lists in
`components.reward.gym_tasks` (scorers that compare strings or Decimals, or scorers reached only after the
answer passed a whitelist parser); any other task scores 0.0 without running its scorer.

`compute_score` itself has no deadline (sympy cannot be interrupted in-process; math-verify's
signal-based timeouts only work on the main thread). The pipeline scores through
`components.reward.pool.ScoringPool`, which runs inline only the sources whose cost is bounded by
construction (`cost_is_bounded`) and sends every other item to a worker process that is killed
past `reward.timeout_s`. The pre-filter still keeps known sympy hangs from costing a worker its timeout.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from components.reward.extract import BOX_COMMANDS, as_text, extract_boxed, last_box_span, reference_answers
from components.reward.gym import RG_PREFIX, rg_equal
from components.reward.gym_tasks import ACCEPTED_TASKS, PARSED_TASKS
from components.reward.math_equal import math_equal

log = logging.getLogger(__name__)

Scorer = Callable[[str, str, Any, "dict | None"], float]
_EXTRA_SCORERS: dict[str, Scorer] = {}


def register_scorer(prefix: str, scorer: Scorer) -> None:
    """Route every data_source starting with `prefix` to `scorer(data_source, text, truth, extra_info)`.

    For custom verifiers (and the scoring pool's tests). Registered scorers are consulted before
    the built-in verifiers; prefixes under reasoning_gym/ are refused so those stay unambiguous.
    """
    if prefix.startswith(RG_PREFIX) or not prefix:
        raise ValueError(f"scorer prefix {prefix!r} is empty or shadows a built-in source")
    _EXTRA_SCORERS[prefix] = scorer


def _extra_scorer(data_source: str) -> Scorer | None:
    for prefix, scorer in _EXTRA_SCORERS.items():
        if data_source.startswith(prefix):
            return scorer
    return None


# --- correctness --------------------------------------------------------------------------------


def score_and_error(
    data_source: str, solution_str: Any, ground_truth: Any, extra_info: dict | None = None
) -> tuple[float, str | None]:
    """(reward, None), or (0.0, what was raised) when a built-in verifier raised.

    The scoring pool counts such items as errors (reward/scoring_errors); compute_score logs them.
    A registered scorer's exception propagates (the pool counts it too).
    """
    data_source = str(data_source)
    custom = _extra_scorer(data_source)
    if custom is not None:
        return float(custom(data_source, as_text(solution_str), ground_truth, extra_info)), None
    pred = extract_boxed(as_text(solution_str))
    if pred is None or not pred.strip():
        return 0.0, None
    try:
        golds = reference_answers(ground_truth)
        if data_source.startswith(RG_PREFIX):
            task = data_source[len(RG_PREFIX) :]
            return float(any(rg_equal(task, gold, pred, extra_info) for gold in golds)), None
        return float(any(math_equal(gold, pred) for gold in golds)), None
    except Exception as exc:  # a verifier bug must not take down a training run
        return 0.0, f"{type(exc).__name__}: {exc}"


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None) -> float:
    """verl-style reward: 1.0 if the last boxed answer in `solution_str` matches `ground_truth`.

    `ground_truth` may be a string, a worked solution, or a list of acceptable answers. Never
    raises for built-in sources: a verifier error scores 0.0 and is logged. No deadline: score
    untrusted completions through components.reward.pool.ScoringPool, which adds reward.timeout_s.
    """
    value, error = score_and_error(data_source, solution_str, ground_truth, extra_info)
    if error is not None:
        log.warning("verifier error on %s: %s", data_source, error)
    return value


def is_verifiable(data_source: str, ground_truth: str | None) -> bool:
    """Whether the verifier can use this reference answer: it must parse and match itself."""
    answers = reference_answers(ground_truth)
    if not answers:
        return False
    if data_source.startswith(RG_PREFIX):
        if data_source[len(RG_PREFIX) :] not in ACCEPTED_TASKS:
            return False
        if data_source == RG_PREFIX + "chain_sum":
            try:
                Decimal(answers[0].replace(",", ""))
            except InvalidOperation:
                return False
        return True
    return compute_score(data_source, "\\boxed{" + answers[0] + "}", answers[0]) == 1.0


def cost_is_bounded(data_source: str, solution_str: Any) -> bool:
    """Whether compute_score on this item is cheap by construction, so it may run without a deadline.

    True for reasoning-gym tasks other than PARSED_TASKS (a string or Decimal comparison, linear in
    the answer's length, or 0.0 for a task that is not accepted) and for any built-in source when
    the completion has no non-empty box (0.0 after one linear scan). Math answers, PARSED_TASKS
    (sympy) and registered scorers (unknown cost) need a deadline.
    """
    data_source = str(data_source)
    if _extra_scorer(data_source) is not None:
        return False
    if data_source.startswith(RG_PREFIX) and data_source[len(RG_PREFIX) :] not in PARSED_TASKS:
        return True
    pred = extract_boxed(as_text(solution_str))
    return pred is None or not pred.strip()


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
