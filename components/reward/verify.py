"""The in-process verifier: routes a data_source to its verifier and scores one item, with no deadline.

Math goes through math-verify (components.reward.math_equal, behind the normaliser and the
pre-filter); reasoning-gym tasks use the task's own scorer, with a fast exact path for chain_sum
(components.reward.gym); registered scorers (`register_scorer`) come first.

Model output is only ever parsed, never evaluated as Python: math answers go through math-verify's
LaTeX parser only, and a reasoning-gym task is scored only if it is on one of the two lists in
`components.reward.gym_tasks` (scorers that compare strings or Decimals, or scorers reached only after
the answer passed a whitelist parser); any other task scores 0.0 without running its scorer.

Nothing here has a deadline (sympy cannot be interrupted in-process). This is what a scoring worker
runs (components.reward.worker); callers use components.reward.score.compute_score or a ScoringPool,
which run inline only the items whose cost is bounded by construction (`cost_is_bounded`).
"""

from __future__ import annotations

from typing import Any, Callable

from components.reward.answer_forms import top_level_split
from components.reward.extract import as_text, extract_boxed, final_boxes, reference_answers
from components.reward.gym import RG_PREFIX, rg_equal
from components.reward.gym_tasks import PARSED_TASKS
from components.reward.math_equal import math_equal, reference_is_list

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


def extra_scorer(data_source: str) -> Scorer | None:
    """The registered scorer for this data_source, or None for the built-in verifiers."""
    for prefix, scorer in _EXTRA_SCORERS.items():
        if data_source.startswith(prefix):
            return scorer
    return None


def score_and_error(
    data_source: str, solution_str: Any, ground_truth: Any, extra_info: dict | None = None
) -> tuple[float, str | None]:
    """(reward, None), or (0.0, what was raised) when a built-in verifier raised.

    The scoring pool counts such items as errors (reward/scoring_errors); compute_score logs them.
    A registered scorer's exception propagates (the pool counts it too).
    """
    data_source = str(data_source)
    custom = extra_scorer(data_source)
    if custom is not None:
        return float(custom(data_source, as_text(solution_str), ground_truth, extra_info)), None
    text = as_text(solution_str)
    pred = extract_boxed(text)
    if pred is None or not pred.strip():
        return 0.0, None
    try:
        golds = reference_answers(ground_truth)
        if data_source.startswith(RG_PREFIX):
            task = data_source[len(RG_PREFIX) :]
            return float(any(rg_equal(task, gold, pred, extra_info) for gold in golds)), None
        return float(any(math_equal(gold, _math_answer(text, pred, gold)) for gold in golds)), None
    except Exception as exc:  # a verifier bug must not take down a training run
        return 0.0, f"{type(exc).__name__}: {exc}"


def _math_answer(text: str, last_box: str, gold: str) -> str:
    """The answer to compare with `gold`: the last box, or, when the reference is a list and the last
    box holds one item, every box of the final run of boxes joined as one list (`\\boxed{3}` and
    `\\boxed{4}` answer "3, 4"; see components.reward.extract.final_boxes)."""
    if len(top_level_split(last_box, ",")) > 1 or not reference_is_list(gold):
        return last_box
    return ", ".join(final_boxes(text)) or last_box


def cost_is_bounded(data_source: str, solution_str: Any) -> bool:
    """Whether scoring this item is cheap by construction, so it may run without a deadline.

    True for reasoning-gym tasks other than PARSED_TASKS (a string or Decimal comparison, linear in
    the answer's length, or 0.0 for a task that is not accepted) and for any built-in source when
    the completion has no non-empty box (0.0 after one linear scan). Math answers, PARSED_TASKS
    (sympy) and registered scorers (unknown cost) need a deadline.
    """
    data_source = str(data_source)
    if extra_scorer(data_source) is not None:
        return False
    if data_source.startswith(RG_PREFIX) and data_source[len(RG_PREFIX) :] not in PARSED_TASKS:
        return True
    pred = extract_boxed(as_text(solution_str))
    return pred is None or not pred.strip()


def warm_up() -> None:
    """Pay the verifier's first-call costs now (sympy and the LaTeX grammar, ~0.5 s; the trigonometric
    simplifier's lazy imports and caches, ~0.5 s), not inside the first item's timeout."""
    score_and_error("math", "\\boxed{\\frac12}", "0.5")
    score_and_error("math", "\\boxed{\\sin(\\sin(2))}", "5")
