"""The single place that decides what prompts and SFT targets look like."""

from __future__ import annotations


def format_prompt(expression: str) -> str:
    """Bare expression with no spaces, e.g. "47 + 38" -> "47+38=" (short prompts fit a tiny context)."""
    return "".join(expression.split()).rstrip("=") + "="


def format_solution(prompt: str, answer: str) -> str:
    """SFT target for a prompt: for now just the boxed answer, the format the reward expects."""
    return "\\boxed{" + answer + "}"
