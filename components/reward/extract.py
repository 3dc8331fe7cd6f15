"""What gets compared: the last \\boxed{} answer of a completion, and the reference answers of a ground truth.

Pure string work, linear in the input's length; nothing here parses or evaluates an answer.
"""

from __future__ import annotations

import functools
import math
from typing import Any

BOX_COMMANDS = ("\\boxed", "\\fbox")


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces, else None.

    One backward search for the command plus one forward scan of its argument: linear time.
    Escaped braces (\\{ and \\}) do not count towards the balance.
    """
    span = last_box_span(text)
    return None if span is None else text[span[0] + 1 : span[1]]


def last_box_span(text: str) -> tuple[int, int] | None:
    """(index of the opening brace, index of the closing brace) of the last box, or None."""
    starts = [text.rfind(cmd) + len(cmd) for cmd in BOX_COMMANDS if text.rfind(cmd) >= 0]
    if not starts:
        return None
    i, n = max(starts), len(text)
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
                return i, j
        j += 1
    return None  # unbalanced, e.g. a completion truncated inside the box


def as_text(value: Any) -> str:
    """Completions should be str; bytes (or anything else) are decoded rather than crashing."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


@functools.lru_cache(maxsize=65536)
def _normalise_reference(text: str) -> str:
    # A worked solution (MATH-500 stores one as its ground truth) stands for its last boxed answer.
    if "\\boxed" in text or "\\fbox" in text:
        boxed = extract_boxed(text)
        if boxed is not None and boxed.strip():
            return boxed.strip()
    return text.strip()


def reference_answers(ground_truth: Any) -> list[str]:
    """The acceptable answers in a ground truth as verl or TRL pass it.

    A string, a number, or a list/array of them (verl parquet files store `["70"]`); a worked
    solution is reduced to its last boxed answer. Empty and missing values are dropped.
    """
    several = hasattr(ground_truth, "__iter__") and not isinstance(ground_truth, (str, bytes, dict))
    items = list(ground_truth) if several else [ground_truth]  # list, tuple or numpy array
    out = []
    for item in items:
        if item is None or (isinstance(item, float) and math.isnan(item)):
            continue
        answer = _normalise_reference(as_text(item))
        if answer:
            out.append(answer)
    return out
