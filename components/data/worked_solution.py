"""The single place that decides what prompts and SFT targets look like.

SFT targets are short worked solutions, not bare answers: a column-wise procedure the tiny model can
learn from a few hundred examples and then apply (imperfectly) to new numbers, which leaves RL a
policy that can still improve by exploring prompts that only have a verifiable answer.
"""

from __future__ import annotations

import re

_TWO_TERMS = re.compile(r"(\d+)([+-])(\d+)=?")
_TERMS = re.compile(r"[+-]?\d+")


def format_prompt(expression: str) -> str:
    """Bare expression with no spaces, e.g. "47 + 38" -> "47+38=" (short prompts fit a tiny context)."""
    return "".join(expression.split()).rstrip("=") + "="


def _addition(a: int, b: int) -> str:
    # units column, then the rest with the carry: "47+38=" -> "7+8=15,4+3+1=8 \boxed{85}"
    units = a % 10 + b % 10
    carry = units // 10
    rest = a // 10 + b // 10 + carry
    return f"{a % 10}+{b % 10}={units},{a // 10}+{b // 10}+{carry}={rest} \\boxed{{{a + b}}}"


def _subtraction(a: int, b: int) -> str:
    # larger minus smaller, borrowing in the units column; the sign goes on the boxed answer:
    # "42-17=" -> "42-17,12-7=5,4-1-1=2 \boxed{25}";  "17-42=" -> "42-17,... \boxed{-25}"
    x, y = max(a, b), min(a, b)
    borrow = int(x % 10 < y % 10)
    units = 10 * borrow + x % 10 - y % 10
    units_step = f"{'1' if borrow else ''}{x % 10}-{y % 10}={units}"
    rest = x // 10 - borrow - y // 10
    return f"{x}-{y},{units_step},{x // 10}-{borrow}-{y // 10}={rest} \\boxed{{{a - b}}}"


def _running_sum(prompt: str, answer: str) -> str:
    # three or more terms: partial sums left to right, "3+4-2=" -> "3+4=7,7-2=5 \boxed{5}"
    terms = [int(t) for t in _TERMS.findall(prompt.rstrip("="))]
    steps, total = [], terms[0]
    for term in terms[1:]:
        new = total + term
        steps.append(f"{total}{'+' if term >= 0 else '-'}{abs(term)}={new}")
        total = new
    return ",".join(steps) + f" \\boxed{{{answer}}}"


def format_solution(prompt: str, answer: str) -> str:
    """SFT target for an arithmetic prompt: a worked solution ending in the boxed answer."""
    two = _TWO_TERMS.fullmatch(prompt)
    if two:
        a, op, b = int(two.group(1)), two.group(2), int(two.group(3))
        text = _addition(a, b) if op == "+" else _subtraction(a, b)
    elif len(_TERMS.findall(prompt)) >= 3:
        text = _running_sum(prompt, answer)
    else:
        return "\\boxed{" + answer + "}"
    if not text.endswith(f"\\boxed{{{answer}}}"):
        raise ValueError(f"worked solution for {prompt!r} does not reach the answer {answer!r}: {text!r}")
    return text
