"""Verifiable rewards: 1.0 when the completion's last \\boxed{} answer is correct, else 0.0.

One scorer for RL, evaluation and data validation. Math goes through math-verify (fractions,
decimals, LaTeX, sets, intervals, expressions); reasoning-gym tasks use the task's own scorer,
with a fast exact path for chain_sum (RL scores hundreds of completions per iteration).

Model output is only ever parsed, never evaluated as Python: math answers go through math-verify's
LaTeX parser only, and a reasoning-gym task is scored only if it is on one of the two lists in
`components.gym_tasks` (scorers that compare strings or Decimals, or scorers reached only after the
answer passed a whitelist parser); any other task scores 0.0 without running its scorer.

`compute_score` itself has no deadline (sympy cannot be interrupted in-process; math-verify's
signal-based timeouts only work on the main thread). The pipeline scores through
`components.scoring.ScoringPool`, which runs inline only the sources whose cost is bounded by
construction (`cost_is_bounded`) and sends every other item to a worker process that is killed
past `reward.timeout_s`. Cheap pre-filters below still keep known sympy hangs from costing a
worker its timeout.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from components.gym_tasks import ACCEPTED_TASKS, PARSED_TASKS, is_plain_arithmetic, scorer_inputs

log = logging.getLogger(__name__)

RG_PREFIX = "reasoning_gym/"
_BOX_COMMANDS = ("\\boxed", "\\fbox")

# --- pre-filter limits (see _unsafe_reason) ---------------------------------------------------
MAX_ANSWER_CHARS = 300  # longer "answers" are junk, and parsing cost grows with length
MAX_NESTING = 5  # the LaTeX parser's prediction cost grows exponentially with bracket depth
MAX_EFFECTIVE_EXPONENT = 10_000  # the largest exponent, nested powers multiplied out
MAX_TRANSCENDENTAL_EXPONENT = 12  # the same next to \sin, \log, ...: \cos(12^{99}) is slow to compare
MAX_ROOTED_EXPONENT = 300  # the same under a root: \sqrt{9^{9999}-7} makes sympy factor 9542 digits
MAX_GROUP_EXPONENT = 12  # (x+y+z)^{99} makes sympy expand thousands of terms
MAX_GROUP_DEGREE = 24  # summed over all powers of symbolic groups: (x+1)^{12}(x+2)^{12}...
MAX_RG_ANSWER_CHARS = 10_000  # reasoning-gym scorers are not written for megabyte answers
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

# math-verify logs a warning per process when its timeouts are disabled: that is intended here.
logging.getLogger("math_verify").setLevel(logging.ERROR)

Scorer = Callable[[str, str, Any, "dict | None"], float]
_EXTRA_SCORERS: dict[str, Scorer] = {}


def register_scorer(prefix: str, scorer: Scorer) -> None:
    """Route every data_source starting with `prefix` to `scorer(data_source, text, truth, extra_info)`.

    For custom verifiers (and the scoring pool's tests). Registered scorers are consulted before
    the built-in verifiers; prefixes under reasoning_gym/ are refused so those stay unambiguous.
    """
    if prefix.startswith(RG_PREFIX) or not prefix:
        raise ValueError(f"scorer prefix {prefix!r} is empty or shadows a built-in source")
    _EXTRA_SCORERS[prefix] = scorer


def _extra_scorer(data_source: str) -> Scorer | None:
    for prefix, scorer in _EXTRA_SCORERS.items():
        if data_source.startswith(prefix):
            return scorer
    return None


# --- extraction ---------------------------------------------------------------------------------


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces, else None.

    One backward search for the command plus one forward scan of its argument: linear time.
    Escaped braces (\\{ and \\}) do not count towards the balance.
    """
    span = _last_box_span(text)
    return None if span is None else text[span[0] + 1 : span[1]]


def _last_box_span(text: str) -> tuple[int, int] | None:
    """(index of the opening brace, index of the closing brace) of the last box, or None."""
    starts = [text.rfind(cmd) + len(cmd) for cmd in _BOX_COMMANDS if text.rfind(cmd) >= 0]
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


def _as_text(value: Any) -> str:
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
        answer = _normalise_reference(_as_text(item))
        if answer:
            out.append(answer)
    return out


# --- pre-filter ---------------------------------------------------------------------------------


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


def _unsafe_reason(answer: str) -> str | None:
    """Why parsing or verifying `answer` could hang sympy or eat memory, or None when it is safe.

    Each rule caught a real hang or a multi-second parse (see tests/test_hostile_completions.py):
    length; bracket depth (and |...| bars); towers, huge exponents and large powers of symbolic
    groups or factorials; factorials of anything but small literals, symbols and flat groups;
    binomials of huge or non-integer arguments; exact big-number operators (Gamma, sums, products)
    with five-digit arguments; transcendental functions next to numbers of three digits or more,
    factorials or powers above the 12th; roots of huge factorials or powers.
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
    reason = _power_reason(answer, max_exponent) or _factorial_reason(answer) or _binomial_reason(answer)
    if reason:
        return reason
    if _COSTLY_COMMANDS.search(answer) and _BIG_NUMBER.search(answer):
        return "exact operator on a huge number"
    return None


def _safe_for_sympy(answer: str) -> bool:
    return _unsafe_reason(answer) is None


# --- math ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _parse_boxed(answer: str) -> tuple:
    # Cached: RL scores the same few hundred ground truths every iteration. LaTeX extraction only:
    # math-verify's plain-expression fallback would hand the text to sympy's parse_expr.
    from math_verify import LatexExtractionConfig, parse

    return tuple(parse("\\boxed{" + answer + "}", extraction_config=[LatexExtractionConfig()],
                       parsing_timeout=None))


def _math_equal(gold: str, pred: str) -> bool:
    from math_verify import verify

    if not _safe_for_sympy(pred):
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


# --- reasoning-gym ------------------------------------------------------------------------------


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


def _rg_equal(task: str, gold: str, pred: str, extra_info: dict | None) -> bool:
    """Exact check for reasoning-gym answers, then the task's own scorer (binary: only 1.0 counts).

    Only accepted tasks (components.gym_tasks) get that far; a task whose scorer parses the answer
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


# --- public scoring API -------------------------------------------------------------------------


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None) -> float:
    """verl-style reward: 1.0 if the last boxed answer in `solution_str` matches `ground_truth`.

    `ground_truth` may be a string, a worked solution, or a list of acceptable answers. Never
    raises for built-in sources: a verifier error scores 0.0 and is logged. No deadline: score
    untrusted completions through components.scoring.ScoringPool, which adds reward.timeout_s.
    """
    data_source = str(data_source)
    custom = _extra_scorer(data_source)
    if custom is not None:
        return float(custom(data_source, _as_text(solution_str), ground_truth, extra_info))
    pred = extract_boxed(_as_text(solution_str))
    if pred is None or not pred.strip():
        return 0.0
    try:
        golds = reference_answers(ground_truth)
        if data_source.startswith(RG_PREFIX):
            task = data_source[len(RG_PREFIX) :]
            return float(any(_rg_equal(task, gold, pred, extra_info) for gold in golds))
        return float(any(_math_equal(gold, pred) for gold in golds))
    except Exception as exc:  # a verifier bug must not take down a training run
        log.warning("verifier error on %s: %s: %s", data_source, type(exc).__name__, exc)
        return 0.0


_FORMAT_TAIL = re.compile(r"(?:\s|\$|\\\]|\\\)|\.|\*\*)*")


def format_score(solution_str: str) -> float:
    """1.0 when the completion ends with exactly one well-formed, non-empty final \\boxed{...}, else 0.0.

    Well-formed: one \\boxed (or \\fbox) in the whole text, with balanced braces and a non-blank
    argument. Final: after the box only whitespace, '.', '$', '\\]', '\\)' or '**' (closing math
    mode, a full stop or Markdown bold) may follow. It says nothing about correctness.
    """
    text = _as_text(solution_str)
    if sum(text.count(cmd) for cmd in _BOX_COMMANDS) != 1:
        return 0.0
    span = _last_box_span(text)
    if span is None or not text[span[0] + 1 : span[1]].strip():
        return 0.0
    return 1.0 if _FORMAT_TAIL.fullmatch(text, span[1] + 1) else 0.0


def shaped_reward(
    correct: float, solution_str: str, *, correct_weight: float = 1.0, format_weight: float = 0.0
) -> float:
    """correct_weight * correct + format_weight * format_score(solution_str).

    With the defaults this is the plain verifiable reward; the format term is only computed when
    it has a weight.
    """
    reward = correct_weight * float(correct)
    if format_weight:
        reward += format_weight * format_score(solution_str)
    return reward


def compute_shaped_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    correct_weight: float = 1.0,
    format_weight: float = 0.0,
) -> float:
    """compute_score plus the optional format term (verl passes the weights as reward_kwargs)."""
    correct = compute_score(data_source, solution_str, ground_truth, extra_info)
    return shaped_reward(correct, solution_str, correct_weight=correct_weight, format_weight=format_weight)


def is_verifiable(data_source: str, ground_truth: str | None) -> bool:
    """Whether the verifier can use this reference answer: it must parse and match itself."""
    answers = reference_answers(ground_truth)
    if not answers:
        return False
    if data_source.startswith(RG_PREFIX):
        if data_source[len(RG_PREFIX) :] not in ACCEPTED_TASKS:
            return False
        if data_source == RG_PREFIX + "chain_sum":
            try:
                Decimal(answers[0].replace(",", ""))
            except InvalidOperation:
                return False
        return True
    return compute_score(data_source, "\\boxed{" + answers[0] + "}", answers[0]) == 1.0


def cost_is_bounded(data_source: str, solution_str: Any) -> bool:
    """Whether compute_score on this item is cheap by construction, so it may run without a deadline.

    True for reasoning-gym tasks other than PARSED_TASKS (a string or Decimal comparison, linear in
    the answer's length, or 0.0 for a task that is not accepted) and for any built-in source when
    the completion has no non-empty box (0.0 after one linear scan). Math answers, PARSED_TASKS
    (sympy) and registered scorers (unknown cost) need a deadline.
    """
    data_source = str(data_source)
    if _extra_scorer(data_source) is not None:
        return False
    if data_source.startswith(RG_PREFIX) and data_source[len(RG_PREFIX) :] not in PARSED_TASKS:
        return True
    pred = extract_boxed(_as_text(solution_str))
    return pred is None or not pred.strip()


def _completion_text(completion: Any) -> str:
    """TRL passes plain strings, or lists of chat messages for conversational datasets."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")


def trl_reward_func(
    completions: list[Any], ground_truth: list[Any], data_source: list[str] | str = "math", **kwargs: Any
) -> list[float]:
    """TRL reward-function adapter: dataset columns arrive as keyword lists aligned with completions.

    In-process like compute_score, so without a deadline; the pipeline scores through ScoringPool."""
    sources = [data_source] * len(completions) if isinstance(data_source, str) else list(data_source)
    return [compute_score(s, _completion_text(c), g) for s, c, g in zip(sources, completions, ground_truth)]


def trl_format_reward_func(completions: list[Any], **kwargs: Any) -> list[float]:
    """format_score as a TRL reward function (weight it with GRPOConfig.reward_weights)."""
    return [format_score(_completion_text(c)) for c in completions]
