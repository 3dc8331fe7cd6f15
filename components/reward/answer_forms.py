"""Answer forms the comparison must read as their author meant them, decided after parsing.

components.reward.math_equal applies these between the parser and math-verify's comparison; each is
one rule for one class of real answers (see docs/verifiers.md for what each accepts and refuses):

- named value: `|r-s| = 16`, `E(2020,1993) = 76`, `\\frac{28}{4} = 7` answer 16, 76 and 7, because
  the left side names the value (or is a constant equal to it); `x + 1 = 0` and `2x = 6` are
  equations to solve and `3 + 4 = 8` is false, so none of them answers 0, 6 or 8;
- interval: a chain of inequalities bounding one variable by constants (`\\tfrac12 \\le x \\le 8`)
  is the interval it describes (`[1/2, 8]`);
- ordered list: a bare list reference of three or more real numbers that are not sorted
  (`2, 4, 3`) is an ordered tuple, so its elements must come in that order;
- unevaluated arithmetic: against a reference that is a number in lowest terms (5, `\\frac34`,
  0.75), an answer made of numbers and operators must be that number, not a sum, product or
  unreduced fraction of numbers (`2 + 3`, `\\frac{6}{8}`): the problem asked for the value.

Pure functions of the answer's text and of sympy objects the parser already built.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

Parse = Callable[[str], tuple]

_OPEN, _CLOSE = "([{", ")]}"
# A function of numbers written with a letter the parser reads as a constant (E, I): E(2020,1993).
_FUNCTION_NAME = re.compile(r"\s*[A-Za-z](?:_\{[^{}]*\}|_\w)?\s*(?:\\left)?\([^()=]*(?:\\right)?\)\s*")
_LAYOUT = re.compile(r"\s|\\left|\\right|\\[,;:! ]|\\displaystyle")
_ARITHMETIC_COMMANDS = re.compile(r"\\(?:[dt]?frac|cdot|times|div)(?![A-Za-z])")
_SIGN = r"[+-]?"
_INTEGER = re.compile(_SIGN + r"\d+")
_DECIMAL = re.compile(_SIGN + r"\d*\.\d+")
_FRACTION = re.compile(_SIGN + r"\\[dt]?frac\{(" + _SIGN + r"\d+)\}\{(" + _SIGN + r"\d+)\}|" + _SIGN + r"(\d+)/(\d+)")
_SCIENTIFIC = re.compile(_SIGN + r"\d+(?:\.\d+)?(?:\\times|\\cdot|\*)10\^(?:\{" + _SIGN + r"\d+\}|\d)")
_BINARY_OPERATOR = re.compile(r"[\d)}.]\s*[+\-*/]|\\(?:cdot|times|div)(?![A-Za-z])")


def top_level_split(text: str, separator: str) -> list[str]:
    """`text` split at `separator` characters outside brackets (escaped braces count as brackets)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _equals_signs(text: str) -> list[str]:
    """`text` split at top-level '=' signs that are not part of <=, >=, != or :=."""
    parts = top_level_split(text, "=")
    merged = [parts[0]]
    for part in parts[1:]:
        if merged[-1][-1:] in ("<", ">", "!", ":", "\\"):
            merged[-1] += "=" + part
        else:
            merged.append(part)
    return merged


def value_text(answer: str) -> str:
    """The value an answer states: the text after its last top-level '=' (all of it if none)."""
    return _equals_signs(answer)[-1].strip()


def _is_constant(expr: Any) -> bool:
    from sympy import Expr

    return isinstance(expr, Expr) and not expr.free_symbols


def _is_name(expr: Any) -> bool:
    """A symbol (x, a_1), a function value (f(2), T(10)), an absolute value, or a sum or product of
    names with coefficients +-1 and no constant term (a + b, ab, r - s): what a problem asks for."""
    from sympy import Abs, Add, Mul, Symbol
    from sympy.core.function import AppliedUndef

    if isinstance(expr, (Symbol, AppliedUndef, Abs)):
        return True
    if isinstance(expr, Mul):
        coefficient, factors = expr.as_coeff_mul()
        return abs(coefficient) == 1 and bool(factors) and all(_is_name(f) for f in factors)
    if isinstance(expr, Add):
        return all(_is_name(term) for term in expr.args)
    return False


def named_value(answer: str, parse: Parse) -> str | None:
    """The right-hand side of `answer` if it is one equation `name = constant` or `c = c` (see the
    module docstring), else None. `parse` is the parser of math_equal (a tuple, first item sympy)."""
    from sympy import simplify

    sides = _equals_signs(answer)
    if len(sides) != 2 or not sides[0].strip() or not sides[1].strip():
        return None
    lhs_text, rhs_text = sides
    rhs, lhs = parse(rhs_text), parse(lhs_text)
    if not rhs or not _is_constant(rhs[0]):
        return None
    if not lhs or isinstance(lhs[0], str):
        return rhs_text if _FUNCTION_NAME.fullmatch(lhs_text) else None
    if _is_constant(lhs[0]):
        return rhs_text if simplify(lhs[0] - rhs[0]) == 0 else None
    return rhs_text if _is_name(lhs[0]) else None


def as_interval(expr: Any) -> Any:
    """The set a chain of inequalities bounding one variable by constants describes, else None."""
    from sympy import And
    from sympy.core.relational import Relational

    relations = expr.args if isinstance(expr, And) else (expr,)
    if not relations or not all(isinstance(r, Relational) for r in relations):
        return None
    symbols = expr.free_symbols
    if len(symbols) != 1:
        return None
    (symbol,) = symbols
    if not all(side == symbol or _is_constant(side) for r in relations for side in (r.lhs, r.rhs)):
        return None
    return expr.as_set()


def _bare_list(text: str) -> list[str] | None:
    """The items of a comma list written without brackets around it, else None."""
    items = top_level_split(text, ",")
    return items if len(items) > 1 and all(item.strip() for item in items) else None


def ordered_list(reference: str, parse: Parse) -> bool:
    """Whether a reference is a bare list of three or more real numbers in neither ascending nor
    descending order: its order carries meaning (T(10), T(11), T(12) = 2, 4, 3), unlike the sorted
    lists of solutions that are compared as sets."""
    items = _bare_list(reference)
    if items is None or len(items) < 3:
        return False
    values = []
    for item in items:
        parsed = parse(item)
        if not parsed or not _is_constant(parsed[0]) or not parsed[0].is_real:
            return False
        values.append(parsed[0])
    pairs = list(zip(values, values[1:]))
    return not (all(bool(a <= b) for a, b in pairs) or all(bool(a >= b) for a, b in pairs))


def as_tuple(answer: str) -> str | None:
    """A bare list written as a tuple (so that its order counts), None if `answer` is no bare list."""
    return "(" + answer + ")" if _bare_list(answer) is not None else None


def _compact(text: str) -> str:
    text = _LAYOUT.sub("", text)
    while len(text) > 1 and text[0] + text[-1] in ("()", "{}") and top_level_split(text[1:-1], ",") == [text[1:-1]]:
        text = text[1:-1]
    return text


def is_number_in_lowest_terms(text: str) -> bool:
    """An integer, a decimal, or a fraction of integers in lowest terms, with an optional sign."""
    text = _compact(text)
    if _INTEGER.fullmatch(text) or _DECIMAL.fullmatch(text):
        return True
    m = _FRACTION.fullmatch(text)
    if not m:
        return False
    numerator, denominator = (int(g) for g in (m.groups()[:2] if m.group(1) else m.groups()[2:]))
    return abs(denominator) > 1 and math.gcd(numerator, denominator) == 1


def unevaluated_arithmetic(answer: str) -> bool:
    """Whether `answer` is numbers joined by operators or an unreduced fraction (2 + 3, 3 \\cdot 4,
    \\frac{6}{8}), rather than one number in lowest terms. Powers, roots and factorials are closed
    forms and do not count, nor does scientific notation (2.5 \\times 10^{6}); anything with a
    letter or another command is not arithmetic."""
    text = _compact(answer)
    if is_number_in_lowest_terms(text) or _SCIENTIFIC.fullmatch(text) or not re.search(r"\d", text):
        return False
    if re.search(r"[A-Za-z\\]", _ARITHMETIC_COMMANDS.sub("", text)):
        return False
    return bool(_BINARY_OPERATOR.search(text) or "frac" in text)
