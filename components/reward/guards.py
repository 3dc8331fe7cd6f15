"""Pre-filter of pathological math answers: cheap checks that keep known sympy hangs away from it.

`unsafe_reason(answer)` says why parsing or verifying an answer could hang sympy or eat memory (a
tower of exponents, a huge factorial, a deep nest, a megabyte string), or None when it is safe.
Each rule caught a real hang or a multi-second parse (see tests/reward/test_score_hostile.py); a
rejected answer scores 0.0, and ordinary answers (all of MATH-500, AIME 2025 and AMC 2023) pass.
The pre-filter saves a scoring worker its timeout; the timeout (components.reward.pool) is still
the bound for whatever it misses.
"""

from __future__ import annotations

import math
import re

# --- limits (see unsafe_reason) ---------------------------------------------------------------
MAX_ANSWER_CHARS = 300  # longer "answers" are junk, and parsing cost grows with length
MAX_NESTING = 5  # the LaTeX parser's prediction cost grows exponentially with bracket depth
MAX_EFFECTIVE_EXPONENT = 10_000  # the largest exponent, nested powers multiplied out
MAX_TRANSCENDENTAL_EXPONENT = 12  # the same next to \sin, \log, ...: \cos(12^{99}) is slow to compare
MAX_ROOTED_EXPONENT = 300  # the same under a root: \sqrt{9^{9999}-7} makes sympy factor 9542 digits
MAX_GROUP_EXPONENT = 12  # (x+y+z)^{99} makes sympy expand thousands of terms
MAX_GROUP_DEGREE = 24  # summed over all powers of symbolic groups: (x+1)^{12}(x+2)^{12}...
# Digits of the largest number sympy would compute: 3 million digits (\binom{9999}{4999}^{1000})
# took 1.4 s, 30 million (^{9999}) 85 s; 100,000 digits cost about 0.1 s. Every answer of MATH-500,
# AIME 2025 and AMC 2023 stays far below it (999! has 2565 digits, 9^{9999} 9542).
MAX_DIGITS = 100_000
_BIG_NUMBER = re.compile(r"\d{5,}")
_FOUR_DIGITS = re.compile(r"\d{4,}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_TEXT_COMMANDS = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{[^{}]*\}")
# Commands that keep an expression numeric and cheap: anything else (\sin, \log, \pi) is symbolic.
_ARITHMETIC_COMMANDS = re.compile(r"\\(?:[dt]?frac|sqrt|cdot|times|left|right)(?![A-Za-z])")
# Operators whose value sympy computes exactly, so that a large argument means a huge number.
_COSTLY_COMMANDS = re.compile(r"\\(?:Gamma|prod|sum|int|operatorname|lim)(?![A-Za-z])")
_BINOMIAL = re.compile(r"\\[dt]?binom\s*(\{[^{}]*\}|\S)\s*(\{[^{}]*\}|\S)")
# Functions whose values sympy cannot compare with a large number quickly:
# 99999999999999999999999999999 / \log 2, \exp(9999) and |\log 12| 99! hang it.
_TRANSCENDENTAL = re.compile(r"\\(?:a?r?c?(?:sin|cos|tan|sec|csc|cot)h?|ln|log|exp|lg)(?![A-Za-z])")
_THREE_DIGITS = re.compile(r"\d{3,}")
_BIG_FACTORIAL = re.compile(r"\d{3,}\s*!")
_FRACTIONAL_EXPONENT = re.compile(r"\^\s*\{[^{}]*(?:\\[dt]?frac|/|\.)")
# An exponent that is itself a function value can be astronomically large: 99^{\binom{999}{2}}.
_FUNCTION_IN_EXPONENT = re.compile(
    r"\\(?:[dt]?binom|choose|Gamma|prod|sum|int|operatorname|lim|exp|ln|log|lg|a?r?c?(?:sin|cos|tan|sec|csc|cot)h?)"
    r"(?![A-Za-z])"
)
# What a factorial may apply to: a literal of at most three digits, a symbol, or a flat group.
_FACTORIAL_OPERAND = re.compile(r"(?:(?<!\d)\d{1,3}|[A-Za-z]|\([\w+\-*/\s]*\)|\{[\w+\-*/\s]*\})\s*$")


def _group_end(expr: str, k: int, open_ch: str, close_ch: str) -> int:
    """Index just past the group opened at expr[k], or len(expr) when it never closes."""
    depth = 0
    for j in range(k, len(expr)):
        if expr[j] == open_ch:
            depth += 1
        elif expr[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(expr)


def _group_start(expr: str, close: int) -> int:
    """Index of the bracket that opens the group closed at expr[close] (0 when it never opens)."""
    depth = 0
    for j in range(close, -1, -1):
        if expr[j] in ")]}":
            depth += 1
        elif expr[j] in "([{":
            depth -= 1
            if depth == 0:
                return j
    return 0


def _exponents(expr: str) -> list[tuple[int, int, str]]:
    """(index of the ^, index where its base starts, exponent text) for every ^ in `expr`.

    The exponent is a {...} or (...) group, a command or one character; the base is the bracket
    group or the single character before the ^.
    """
    out = []
    for m in re.finditer(r"\^\s*", expr):
        before = expr[: m.start()].rstrip()
        base = _group_start(expr, len(before) - 1) if before[-1:] in ")]}" else max(len(before) - 1, 0)
        k = m.end()
        if k >= len(expr):
            exponent = ""
        elif expr[k] in "{(":
            close = "}" if expr[k] == "{" else ")"
            exponent = expr[k + 1 : _group_end(expr, k, expr[k], close) - 1]
        elif expr[k] == "\\":
            command = _COMMAND.match(expr, k)
            exponent = command.group() if command else expr[k : k + 2]
        else:
            exponent = expr[k]
        out.append((m.start(), base, exponent))
    return out


def _nesting_depth(expr: str) -> int:
    depth = deepest = 0
    for ch in expr:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
    return deepest


def _is_symbolic(expr: str) -> bool:
    """Whether `expr` has a variable or a function in it (text and plain arithmetic do not count)."""
    core = _ARITHMETIC_COMMANDS.sub("", _TEXT_COMMANDS.sub("", expr))
    return bool(re.search(r"[A-Za-z\\]", core))


def _power_reason(answer: str, max_exponent: int) -> str | None:
    """Towers, exponents above `max_exponent`, and large powers of symbolic groups or factorials."""
    effective: dict[int, int] = {}  # ^ position -> its exponent with the powers inside its base
    group_degree = 0
    for caret, base, exponent in _exponents(answer):
        if "^" in exponent or "!" in exponent or _BIG_NUMBER.search(exponent) or _FUNCTION_IN_EXPONENT.search(exponent):
            return "tower or huge exponent"
        if answer[:base].rstrip().endswith("^"):
            return "tower"  # x^{a}^{b}: a superscript of a superscript
        size = math.prod(max(int(n), 1) for n in re.findall(r"\d+", exponent))  # 9999\cdot 99 counts whole
        inner = max((e for c, e in effective.items() if base <= c < caret), default=1)
        effective[caret] = size * inner  # (9^{999})^{999} is 9^{998001}
        if effective[caret] > max_exponent:
            return "exponents too large"
        base_text = answer[base:caret]
        if "!" in base_text and size > MAX_GROUP_EXPONENT:
            return "large power of a factorial"  # (999!)^{999} has 2.5 million digits
        if base_text[:1] in "([{" and _is_symbolic(base_text):
            group_degree += size
            if size > MAX_GROUP_EXPONENT or group_degree > MAX_GROUP_DEGREE:
                return "large powers of symbolic groups"
    return None


def _factorial_reason(answer: str) -> str | None:
    if "!" not in answer:
        return None
    if _FOUR_DIGITS.search(answer):
        return "factorial next to a large number"
    for i, ch in enumerate(answer):
        if ch == "!" and not _FACTORIAL_OPERAND.search(answer, 0, i):
            return "factorial of a complex operand"  # 9!!!!, (9!)!
    return None


def _binomial_reason(answer: str) -> str | None:
    """Binomials of integers (up to four digits) or of simple symbolic terms with numbers up to 12.

    sympy expands binomial(n, 99) into a degree-99 polynomial and binomial(99, e) into Gamma
    functions; either can take seconds to compare.
    """
    if "\\choose" in answer:
        return "\\choose"  # its operands are not delimited: not worth parsing here
    for m in _BINOMIAL.finditer(answer):
        args = [a.strip("{} ") for a in m.groups()]
        if all(re.fullmatch(r"\d{1,4}", a) for a in args):
            continue
        # Variables only: no commands, and not e or i, which sympy reads as constants.
        simple = all(re.fullmatch(r"[a-df-hj-zA-DF-HJ-Z\d+\-\s]*", a) for a in args)
        if not simple or any(int(n) > MAX_GROUP_EXPONENT for n in re.findall(r"\d+", "".join(args))):
            return "binomial of a huge or non-integer argument"  # \binom{y}{999}, \binom{99}{\pi}
    return None


# --- cost estimate: digits of the numbers an answer makes sympy compute ----------------------------
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\d+(?:\.\d+)?|\S")
_IGNORED = frozenset({"\\left", "\\right", "\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad", "~",
                      "\\displaystyle"})
_OPENERS = {"(": ")", "{": "}", "[": "]", "\\{": "\\}"}
_CLOSERS = frozenset(_OPENERS.values())
_PRODUCT = frozenset({"*", "/", "\\cdot", "\\times", "\\div"})
_FRACTIONS = frozenset({"\\frac", "\\dfrac", "\\tfrac"})
_BINOMIALS = frozenset({"\\binom", "\\dbinom", "\\tbinom"})
_LOG10_E = math.log10(math.e)


def _value(digits: float) -> float:
    """The number with `digits` decimal digits (10**digits), inf when it overflows a float."""
    return 10.0 ** digits if digits < 300 else math.inf


def _log10_factorial(n: float) -> float:
    return math.lgamma(n + 1) * _LOG10_E if n < 1e300 else math.inf


class _Digits:
    """Upper estimate of log10 of every number an answer makes sympy compute exactly.

    A small recursive reading of the answer's tokens: a literal has its own digits; a product (*,
    \\cdot, /, \\frac, juxtaposition) adds its factors' digits; a sum keeps the largest; x^{e} has
    digits(x) * e; n! and \\binom{n}{k} have log10 of their values (lgamma); symbols, functions and
    anything unknown count 0 digits (other rules see to them). `largest` is the maximum over every
    intermediate value, the size of the biggest integer sympy would build. Each token is read once.
    """

    def __init__(self, answer: str) -> None:
        self.tokens = [t for t in _TOKEN.findall(answer) if t not in _IGNORED]
        self.i = 0
        self.largest = 0.0
        while self.i < len(self.tokens):  # a stray closer ends a group early: read on after it
            self._group(None)
            self.i += 1

    def _note(self, digits: float) -> float:
        self.largest = max(self.largest, digits)
        return digits

    def _group(self, close: str | None) -> float:
        best = term = 0.0
        while self.i < len(self.tokens):
            token = self.tokens[self.i]
            if token in _CLOSERS:
                self.i += token == close
                break
            if token in _PRODUCT:
                self.i += 1
            elif token[0].isalnum() or token[0] == "\\" or token in _OPENERS:
                term += self._factor()
            else:  # + - = , < and any other operator start a new term
                best, term = max(best, term), 0.0
                self.i += 1
        return self._note(max(best, term))

    def _factor(self) -> float:
        digits = self._atom()
        while self.i < len(self.tokens) and self.tokens[self.i] in ("!", "^", "_"):
            operator = self.tokens[self.i]
            self.i += 1
            if operator == "!":
                digits = _log10_factorial(_value(digits))
            elif operator == "^":
                exponent = self._atom()
                digits = digits * _value(exponent) if digits > 0 else 0.0
            else:
                self._atom()  # a subscript names, it does not compute
            self._note(digits)
        return digits

    def _atom(self) -> float:
        if self.i >= len(self.tokens):
            return 0.0
        token = self.tokens[self.i]
        self.i += 1
        if token[0].isdigit():
            whole = token.split(".")[0]
            return self._note(math.log10(max(float(whole), 1.0)) if len(whole) < 300 else float(len(whole)))
        if token in _OPENERS:
            return self._group(_OPENERS[token])
        if token in _FRACTIONS:
            return self._note(self._atom() + self._atom())
        if token in _BINOMIALS:
            n, k = _value(self._atom()), _value(self._atom())
            if math.isinf(n):
                return self._note(math.inf)
            k = min(k, max(n - k, 0.0))
            return self._note(max(_log10_factorial(n) - _log10_factorial(k) - _log10_factorial(n - k), 0.0))
        if token == "\\sqrt":
            if self.i < len(self.tokens) and self.tokens[self.i] == "[":
                self.i += 1
                self._group("]")
            return self._atom() / 2
        return 0.0  # a letter, a function or a command: symbolic (its argument is read as the next factor)


def _magnitude_reason(answer: str) -> str | None:
    digits = _Digits(answer).largest
    return f"a number of about {digits:.3g} digits" if digits > MAX_DIGITS else None


def unsafe_reason(answer: str) -> str | None:
    """Why parsing or verifying `answer` could hang sympy or eat memory, or None when it is safe.

    Each rule caught a real hang or a multi-second parse (see tests/reward/test_score_hostile.py):
    length; bracket depth (and |...| bars); towers, huge exponents and large powers of symbolic
    groups or factorials; factorials of anything but small literals, symbols and flat groups;
    binomials of huge or non-integer arguments; exact big-number operators (Gamma, sums, products)
    with five-digit arguments; transcendental functions next to numbers of three digits or more,
    factorials or powers above the 12th; roots of huge factorials or powers; and any number of more
    than MAX_DIGITS digits that factorials, binomials and powers of them would build (the cost
    estimate `_Digits`: \\binom{9999}{4999}^{9999}, 9^{99}!, (999*999)!).
    A rejected answer scores 0.0; ordinary answers (all of MATH-500, AIME 2025 and AMC 2023) pass.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return "too long"
    answer = answer.replace("\\!", "")  # thin negative space, not a factorial: 10,\!080
    if _nesting_depth(answer) > MAX_NESTING or answer.count("|") > 2 * MAX_NESTING:
        return "nested too deeply"
    # sympy compares a transcendental value with a huge number slowly (it factors the number and
    # keeps refining precision), so next to \sin or \log numbers must stay small.
    transcendental = bool(_TRANSCENDENTAL.search(answer))
    if transcendental and (_THREE_DIGITS.search(answer) or "!" in answer):
        return "transcendental function next to a large number"
    rooted = "\\sqrt" in answer or bool(_FRACTIONAL_EXPONENT.search(answer))
    if rooted and _BIG_FACTORIAL.search(answer):
        return "root of a huge factorial"  # \sqrt{999!-7}
    max_exponent = (MAX_TRANSCENDENTAL_EXPONENT if transcendental
                    else MAX_ROOTED_EXPONENT if rooted else MAX_EFFECTIVE_EXPONENT)
    reason = (_power_reason(answer, max_exponent) or _factorial_reason(answer) or _binomial_reason(answer)
              or _magnitude_reason(answer))
    if reason:
        return reason
    if _COSTLY_COMMANDS.search(answer) and _BIG_NUMBER.search(answer):
        return "exact operator on a huge number"
    return None


def safe_for_sympy(answer: str) -> bool:
    """Whether `answer` may go to the LaTeX parser and sympy (see unsafe_reason)."""
    return unsafe_reason(answer) is None
