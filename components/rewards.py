"""Verifiable rewards: 1.0 when the completion's last \\boxed{} answer is correct, else 0.0.

One scorer for RL, evaluation and data validation. reasoning-gym tasks get a fast exact check
(RL scores hundreds of completions per iteration); everything else goes through math-verify.
Model output is only ever parsed, never evaluated as Python.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

RG_PREFIX = "reasoning_gym/"
_BOX_COMMANDS = ("\\boxed", "\\fbox")
# math-verify runs with its signal.alarm timeouts off (they fail outside the main thread), so
# nothing stops sympy once it starts; these cheap guards keep pathological answers away from it.
MAX_ANSWER_CHARS = 300
_BIG_NUMBER = re.compile(r"\d{5,}")
_BIG_FACTORIAL = re.compile(r"\d{4,}\s*!")

# math-verify logs a warning per process when its timeouts are disabled: that is intended here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces, else None.

    One backward search for the command plus one forward scan of its argument: linear time.
    Escaped braces (\\{ and \\}) do not count towards the balance.
    """
    start = max(text.rfind(cmd) + len(cmd) if text.rfind(cmd) >= 0 else -1 for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    i, n = start, len(text)
    while i < n and text[i].isspace():
        i += 1
    if i >= n or text[i] != "{":
        return None
    depth, j = 0, i
    while j < n:
        ch = text[j]
        if ch == "\\":
            j += 2  # skip the escaped character
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
        j += 1
    return None  # unbalanced, e.g. a completion truncated inside the box


def _exponents(expr: str) -> list[str]:
    """Text of every exponent: a balanced {...} group after ^, else the next token."""
    out = []
    for m in re.finditer(r"\^\s*", expr):
        k = m.end()
        if k < len(expr) and expr[k] == "{":
            depth = 0
            for j in range(k, len(expr)):
                depth += {"{": 1, "}": -1}.get(expr[j], 0)
                if depth == 0:
                    out.append(expr[k + 1 : j])
                    break
            else:
                out.append(expr[k + 1 :])
        else:
            out.append(expr[k : k + 1])
    return out


def _safe_for_sympy(answer: str) -> bool:
    """Reject answers whose evaluation could hang sympy: towers, huge exponents or factorials."""
    if len(answer) > MAX_ANSWER_CHARS or _BIG_FACTORIAL.search(answer):
        return False
    return not any("^" in e or _BIG_NUMBER.search(e) for e in _exponents(answer))


@functools.lru_cache(maxsize=65536)
def _parse_boxed(answer: str) -> tuple:
    # Cached: RL scores the same few hundred ground truths every iteration.
    from math_verify import parse

    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def _math_equal(gold: str, pred: str) -> bool:
    from math_verify import verify

    if not _safe_for_sympy(pred):
        return False
    gold_parsed, pred_parsed = _parse_boxed(gold), _parse_boxed(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))


def _strip_ws(text: str) -> str:
    return "".join(text.split())


@functools.lru_cache(maxsize=None)
def _rg_dataset(task: str) -> Any:
    import reasoning_gym

    return reasoning_gym.create_dataset(task, size=1, seed=0)


def _rg_equal(task: str, gold: str, pred: str, extra_info: dict | None) -> bool:
    """Exact check for reasoning-gym answers, then the task's own scorer (binary: only 1.0 counts)."""
    gold, pred = _strip_ws(gold), _strip_ws(pred)
    if pred == gold:
        return True
    if task == "chain_sum":
        # Same rule as chain_sum.score_answer (sign, leading zeros, trailing decimals, commas) but
        # without its partial credit and without importing reasoning_gym (~1.5 s) in every worker.
        try:
            return Decimal(pred.replace(",", "")) == Decimal(gold.replace(",", ""))
        except (InvalidOperation, ValueError):
            return False
    metadata = (extra_info or {}).get("metadata", {})
    entry = {"answer": gold, "metadata": json.loads(metadata) if isinstance(metadata, str) else metadata}
    try:
        return _rg_dataset(task).score_answer(pred, entry) >= 1.0
    except Exception:  # an unknown task or a scorer that needs richer metadata: exact match only
        return False


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None) -> float:
    """verl-style reward: 1.0 if the last boxed answer in `solution_str` matches `ground_truth`."""
    pred = extract_boxed(solution_str)
    if pred is None or not pred.strip():
        return 0.0
    if data_source.startswith(RG_PREFIX):
        return float(_rg_equal(data_source[len(RG_PREFIX) :], str(ground_truth), pred, extra_info))
    return float(_math_equal(str(ground_truth), pred))


def is_verifiable(data_source: str, ground_truth: str | None) -> bool:
    """Whether the verifier can use this reference answer: it must parse and match itself."""
    if ground_truth is None or not str(ground_truth).strip():
        return False
    gt = str(ground_truth)
    if data_source.startswith(RG_PREFIX):
        if data_source == RG_PREFIX + "chain_sum":
            try:
                Decimal(_strip_ws(gt))
            except InvalidOperation:
                return False
        return True
    return compute_score(data_source, "\\boxed{" + gt + "}", gt) == 1.0


def _completion_text(completion: Any) -> str:
    """TRL passes plain strings, or lists of chat messages for conversational datasets."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")


def trl_reward_func(
    completions: list[Any], ground_truth: list[str], data_source: list[str] | str = "math", **kwargs: Any
) -> list[float]:
    """TRL reward-function adapter: dataset columns arrive as keyword lists aligned with completions."""
    sources = [data_source] * len(completions) if isinstance(data_source, str) else list(data_source)
    return [compute_score(s, _completion_text(c), g) for s, c, g in zip(sources, completions, ground_truth)]
