"""Math answers: equivalence by math-verify (fractions, decimals, LaTeX, sets, intervals, expressions).

Both the answer and the reference go through the normaliser (components.reward.normalize: thousands
groups, juxtaposed numbers, exact decimals against a non-decimal reference) and then the pre-filter
(components.reward.guards); only then does math-verify's LaTeX parser (never Python) read them,
with ANTLR's SLL prediction first (components.reward.latex_parse). math-verify's own timeouts are
off (they rely on signals, which only work on the main thread): the deadline is the scoring pool's.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from components.reward import latex_parse
from components.reward.answer_forms import (
    as_interval,
    as_tuple,
    is_number_in_lowest_terms,
    named_value,
    ordered_list,
    unevaluated_arithmetic,
    value_text,
)
from components.reward.guards import MAX_ANSWER_CHARS, unsafe_reason
from components.reward.normalize import has_decimal, normalize

# math-verify logs a warning per process when its timeouts are disabled: that is intended here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@functools.lru_cache(maxsize=65536)
def _parse_boxed(answer: str) -> tuple:
    # Cached: RL scores the same few hundred ground truths every iteration. LaTeX extraction only:
    # math-verify's plain-expression fallback would hand the text to sympy's parse_expr.
    from math_verify import LatexExtractionConfig, parse

    latex_parse.install()
    return tuple(parse("\\boxed{" + answer + "}", extraction_config=[LatexExtractionConfig()],
                       parsing_timeout=None))


def _ready(answer: str, exact_decimals: bool) -> tuple[str | None, str | None]:
    """(the normalised answer, None), or (None, why the normaliser or the pre-filter refuses it)."""
    if len(answer) > MAX_ANSWER_CHARS:  # before the normaliser, which is linear but not free
        return None, "too long"
    text, refused = normalize(answer, exact_decimals)
    if text is None:
        return None, refused
    reason = unsafe_reason(text)
    return (None, reason) if reason else (text, None)


@functools.lru_cache(maxsize=65536)
def _ready_reference(gold: str) -> tuple[str | None, str | None]:
    # Cached like _parse_boxed: RL checks the same few hundred references every iteration.
    return _ready(gold, exact_decimals=False)


def reference_refusal(gold: str) -> str | None:
    """Why math_equal refuses the reference `gold` before comparing anything, or None."""
    return _ready_reference(gold)[1]


def math_equal(gold: str, pred: str) -> bool:
    """Whether the boxed answer `pred` equals the reference `gold` (math-verify, after the normaliser
    and the pre-filter, which both sides must pass, and the answer forms of
    components.reward.answer_forms). A decimal answer counts only if it equals a reference without
    decimals exactly (0.5 == \\frac12, 0.333333 != \\frac13)."""
    from math_verify import verify

    gold = _ready_reference(gold)[0]
    if gold is None:
        return False
    plain = _ready(pred, exact_decimals=False)[0]
    if plain is None:
        return False
    if is_number_in_lowest_terms(gold) and unevaluated_arithmetic(value_text(plain)):
        return False  # 2 + 3 or \frac{6}{8} against 5 or \frac34: a computation, not its value
    pred = plain if has_decimal(gold) else _ready(pred, exact_decimals=True)[0]
    if pred is None:
        return False
    gold_parsed, pred_parsed = _parse_boxed(gold), _parse_boxed(pred)
    if not gold_parsed or not pred_parsed:
        return False
    gold_expr, pred_expr = gold_parsed[0], pred_parsed[0]
    if (not _is_relation(gold_expr) and not _is_assignment(pred_expr)
            and (_is_equation(pred_expr) or isinstance(pred_expr, str))):
        value = named_value(pred, _parse_boxed)
        if value is not None:  # |r-s| = 16, E(2020,1993) = 76, \frac{28}{4} = 7
            pred_parsed = _parse_boxed(value)
        elif _is_equation(pred_expr):
            # math-verify would compare only the right-hand side: 5x - 7y + 11z + 4 = 0 "equals" 0.
            return False
    if ordered_list(gold, _parse_boxed):  # 2, 4, 3 is a tuple: 2, 3, 4 does not answer it
        gold_parsed = _parse_boxed("(" + gold + ")")
        pred_parsed = _parse_boxed(as_tuple(pred)) if as_tuple(pred) else pred_parsed
    gold_parsed, pred_parsed = _as_intervals(gold_parsed, pred_parsed)
    if not gold_parsed or not pred_parsed or _unordered(pred_parsed[0], gold_parsed[0]):
        return False
    if _different_variables(gold_parsed[0], pred_parsed[0]):
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))


def reference_is_list(gold: str) -> bool:
    """Whether the reference is a list of several answers (a set or a tuple, not an interval)."""
    from sympy import FiniteSet, Tuple

    gold = _ready_reference(gold)[0]
    parsed = _parse_boxed(gold) if gold is not None else ()
    return bool(parsed) and isinstance(parsed[0], (FiniteSet, Tuple)) and len(parsed[0]) > 1


def _unordered(pred: Any, gold: Any) -> bool:
    """A set given for an ordered tuple: its order is unknown."""
    from sympy import FiniteSet, Tuple

    return isinstance(gold, Tuple) and isinstance(pred, FiniteSet) and len(pred) > 1


def _as_intervals(gold: tuple, pred: tuple) -> tuple[tuple, tuple]:
    """An inequality in one variable against an interval becomes the interval it describes."""
    from sympy import Interval, Union

    if not gold or not pred:
        return gold, pred
    if isinstance(gold[0], (Interval, Union)) and _is_relation(pred[0]):
        interval = as_interval(pred[0])
        return gold, (pred if interval is None else (interval,))
    if isinstance(pred[0], (Interval, Union)) and _is_relation(gold[0]):
        interval = as_interval(gold[0])
        return (gold if interval is None else (interval,)), pred
    return gold, pred


def _different_variables(gold: Any, pred: Any) -> bool:
    """Whether prediction and reference use different variables (x = 5 counts as 5).

    math-verify compares variables strictly, so such a pair is never equal (short of a reference
    like x - x + 5); saying so up front skips sympy's simplification, which is where a product of
    many symbolic factors gets expanded and a constant gets compared with x + 1 at length.
    Relations other than assignments (x < 5 against an interval, 2x + 3 = y against y = 2x + 3)
    are left to math-verify.
    """
    from sympy import Basic
    from sympy.core.relational import Relational

    gold, pred = (_assigned_values(e) if _is_assignment(e) else e for e in (gold, pred))
    if any(isinstance(e, Basic) and e.atoms(Relational) for e in (gold, pred)):
        return False
    gold_symbols, pred_symbols = getattr(gold, "free_symbols", None), getattr(pred, "free_symbols", None)
    if gold_symbols is None or pred_symbols is None:  # a plain string: leave it to math-verify
        return False
    # Only single-letter variables (x, x_1): \text{Evelyn} is one symbol, Evelyn a product of five.
    if not all(re.fullmatch(r"[A-Za-z](_.*)?", str(s)) for s in gold_symbols | pred_symbols):
        return False
    return pred_symbols != gold_symbols


def _assigned_values(expr: Any) -> Any:
    from sympy import And, Tuple

    return Tuple(*(a.rhs for a in expr.args)) if isinstance(expr, And) else expr.rhs


def _is_equation(expr: Any) -> bool:
    from sympy import And, Eq

    return isinstance(expr, Eq) or (isinstance(expr, And) and all(isinstance(a, Eq) for a in expr.args))


def _is_relation(expr: Any) -> bool:
    from sympy import And
    from sympy.core.relational import Relational

    return isinstance(expr, Relational) or (isinstance(expr, And) and all(isinstance(a, Relational) for a in expr.args))


def _is_assignment(expr: Any) -> bool:
    """x = 5, f(2) = 5 or (a, b) = (1, 2): an equation that names its answer on the left."""
    from sympy import And, Eq, Symbol, Tuple
    from sympy.core.function import AppliedUndef

    if isinstance(expr, And):
        return all(_is_assignment(a) for a in expr.args)
    if not isinstance(expr, Eq):
        return False
    names = expr.lhs.args if isinstance(expr.lhs, Tuple) else (expr.lhs,)
    return all(isinstance(n, (Symbol, AppliedUndef)) for n in names)
