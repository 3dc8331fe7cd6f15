"""reasoning-gym answers: an exact check, chain_sum's fast Decimal path, then the task's own scorer.

Only tasks accepted in components.reward.gym_tasks get to a scorer; for PARSED_TASKS (scorers that
call sympy) the answer, and the reference strings the scorer parses, must first pass the whitelist
parser there. Any other task scores 0.0 without any reasoning-gym code running.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from components.reward.gym_tasks import ACCEPTED_TASKS, PARSED_TASKS, is_plain_arithmetic, scorer_inputs

RG_PREFIX = "reasoning_gym/"  # data_source prefix of reasoning-gym tasks: reasoning_gym/<task>
MAX_RG_ANSWER_CHARS = 10_000  # reasoning-gym scorers are not written for megabyte answers


@functools.lru_cache(maxsize=None)
def _rg_dataset(task: str) -> Any:
    import reasoning_gym

    return reasoning_gym.create_dataset(task, size=1, seed=0)


def _chain_sum_equal(gold: str, pred: str) -> bool:
    """chain_sum.score_answer's full-credit rule without importing reasoning_gym (~1.5 s per worker).

    Both sides lose their commas and compare as Decimals, which tolerate sign, leading zeros,
    trailing decimals and surrounding whitespace (and nothing else): "+01,000.00" == "1000".
    """
    try:
        return Decimal(pred.replace(",", "")) == Decimal(gold.replace(",", ""))
    except (InvalidOperation, ValueError):
        return False


def rg_equal(task: str, gold: str, pred: str, extra_info: dict | None) -> bool:
    """Exact check for reasoning-gym answers, then the task's own scorer (binary: only 1.0 counts).

    Only accepted tasks (components.reward.gym_tasks) get that far; a task whose scorer parses the answer
    with sympy sees it only after the answer, and the reference strings it parses, passed the
    whitelist parser.
    """
    if task not in ACCEPTED_TASKS:
        return False  # prepare refuses such data; no reasoning-gym code runs on the answer
    if pred.strip() == gold.strip():
        return True
    if task == "chain_sum":
        return _chain_sum_equal(gold, pred)  # linear in the answer's length
    if len(pred) > max(MAX_RG_ANSWER_CHARS, 4 * len(gold)):
        return False
    metadata = (extra_info or {}).get("metadata", {})
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    if task in PARSED_TASKS:
        inputs = scorer_inputs(task, gold, metadata)
        pred = pred.strip()
        if inputs is None or not all(is_plain_arithmetic(s, inputs[0]) for s in (pred, *inputs[1])):
            return False
    entry = {"answer": gold, "metadata": metadata}
    try:
        return _rg_dataset(task).score_answer(pred, entry) >= 1.0
    except Exception:  # a scorer that needs richer metadata: exact match only
        return False
