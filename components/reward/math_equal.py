"""Math answers: equivalence by math-verify (fractions, decimals, LaTeX, sets, intervals, expressions).

The answer is parsed by math-verify's LaTeX parser only, never as Python, and only after the
pre-filter (components.reward.guards) passed it. math-verify's own timeouts are off (they rely on
signals, which only work on the main thread): the deadline is the scoring pool's.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from components.reward.guards import safe_for_sympy

# math-verify logs a warning per process when its timeouts are disabled: that is intended here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@functools.lru_cache(maxsize=65536)
def _parse_boxed(answer: str) -> tuple:
    # Cached: RL scores the same few hundred ground truths every iteration. LaTeX extraction only:
    # math-verify's plain-expression fallback would hand the text to sympy's parse_expr.
    from math_verify import LatexExtractionConfig, parse

    return tuple(parse("\\boxed{" + answer + "}", extraction_config=[LatexExtractionConfig()],
                       parsing_timeout=None))


def math_equal(gold: str, pred: str) -> bool:
    """Whether the boxed answer `pred` equals the reference `gold` (math-verify, after the pre-filter)."""
    from math_verify import verify

    if not safe_for_sympy(pred):
        return False
    gold_parsed, pred_parsed = _parse_boxed(gold), _parse_boxed(pred)
    if not gold_parsed or not pred_parsed:
        return False
    gold_expr, pred_expr = gold_parsed[0], pred_parsed[0]
    if _is_equation(pred_expr) and not _is_relation(gold_expr) and not _is_assignment(pred_expr):
        # math-verify would compare only the right-hand side: 5x - 7y + 11z + 4 = 0 "equals" 0.
        return False
    if _different_variables(gold_expr, pred_expr):
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))


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
