"""What gets compared: the last \\boxed{} answer of a completion, and the reference answers of a ground truth.

Pure string work, linear in the input's length; nothing here parses or evaluates an answer.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

BOX_COMMANDS = ("\\boxed", "\\fbox")
MAX_LIST_BOXES = 20  # a list answer split over more boxes than this is read from its last 20
# What may stand between two boxes of one list answer: spacing, $, commas, semicolons, \( \) \[ \]
# and "and" (plain or in \text{}).
_BOX_SEPARATOR = re.compile(r"(?:[\s$,;&]|\\[()\[\],;: ]|\\quad|\\text\{\s*and\s*\}|\band\b){0,40}")


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces, else None.

    One backward search for the command plus one forward scan of its argument: linear time.
    Escaped braces (\\{ and \\}) do not count towards the balance.
    """
    span = last_box_span(text)
    return None if span is None else text[span[0] + 1 : span[1]]


def last_box_span(text: str, end: int | None = None) -> tuple[int, int] | None:
    """(index of the opening brace, index of the closing brace) of the last box that starts before
    `end` (default: anywhere), or None."""
    end = len(text) if end is None else end
    found = [(text.rfind(cmd, 0, end), cmd) for cmd in BOX_COMMANDS]
    starts = [at + len(cmd) for at, cmd in found if at >= 0]
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


def final_boxes(text: str) -> list[str]:
    """The contents of the last boxes written together as one list, in order (at most MAX_LIST_BOXES):
    `$\\boxed{3}$ and $\\boxed{4}$` gives ["3", "4"]. Boxes are together when only spacing, `$`,
    commas, semicolons, math delimiters and "and" separate them; any other text ends the run, so a
    first guess boxed earlier in the reasoning is not part of it. [] when there is no complete box."""
    out: list[str] = []
    span = last_box_span(text)
    while span is not None and len(out) < MAX_LIST_BOXES:
        out.append(text[span[0] + 1 : span[1]])
        command_start = max(text.rfind(cmd, 0, span[0]) for cmd in BOX_COMMANDS)
        span = last_box_span(text, command_start)
        if span is None or span[1] >= command_start or not _BOX_SEPARATOR.fullmatch(text, span[1] + 1, command_start):
            break
    return out[::-1]


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
