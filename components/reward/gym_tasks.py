"""Which reasoning-gym tasks the verifier accepts, and the whitelist parser that guards the others.

Model output is untrusted: an RL policy optimises against the reward code. Some reasoning-gym
scorers hand the answer to sympy's parse_expr, which runs the string as Python (countdown with
`open(...)` in its box would write a file). So a task is accepted only if it is either

- SAFE_TASKS: scorers read in reasoning_gym's source (the pinned version) that only compare
  strings or Decimals; their cost is linear in the answer, whose length the caller caps; or
- PARSED_TASKS: scorers that parse with sympy, reached only after the answer, and every reference
  string that scorer parses, passed `is_plain_arithmetic` (numbers, the task's own variable names,
  + - * / ** and parentheses; bounded size, depth and exponents).

Any other task is refused by the prepare stage (`unsupported_tasks_error`) and scores 0.0 without
any reasoning-gym code running. Adding a task means reading its score_answer first.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Callable

# Scorers that never parse the answer as code (reasoning_gym/...):
SAFE_TASKS = frozenset({
    # arithmetic/chain_sum.py, arithmetic/products.py: utils.compute_decimal_reward, i.e. Decimal() of
    # both sides (commas stripped), then a substring test for partial credit.
    "chain_sum", "products",
    # arithmetic/decimal_chain_sum.py: Decimal(answer.strip()) == Decimal(oracle).
    "decimal_chain_sum",
    # basic_arithmetic.py, gcd.py, lcm.py: no override, ProceduralDataset.score_answer (==, then `in`).
    "basic_arithmetic", "gcd", "lcm",
    # algorithmic/spell_backward.py: lower-cased ==, then a loop over the oracle's characters.
    "spell_backward",
})

# Tasks whose answer is a number (Decimal-compared): a reference must be a finite one, not NaN or Infinity.
NUMERIC_TASKS = frozenset({"chain_sum", "products", "decimal_chain_sum", "basic_arithmetic", "gcd", "lcm"})

# Scorers that call sympy.parse_expr on the answer (and sometimes on reference strings). Each maps
# (reference answer, metadata) to (names the answer may use, reference strings the scorer parses),
# or None when the metadata the scorer needs is missing.
Inputs = tuple[frozenset[str], tuple[str, ...]]


def _no_names(gold: str, metadata: dict) -> Inputs:
    # games/countdown.py, games/puzzle24.py: parse_expr on the answer, as a float/int, compared with
    # the target; the numbers used come from a regex. Answers are numbers and + - * / only.
    return frozenset(), ()


def _polynomial(gold: str, metadata: dict) -> Inputs:
    # algebra/polynomial_multiplication.py: parse_expr on the answer and on the oracle answer, then ==.
    variables = metadata.get("variables")
    names = variables if isinstance(variables, list) else _single_letters(gold)
    return _letters(names), (gold,)


def _integration(gold: str, metadata: dict) -> Inputs | None:
    # algebra/simple_integration.py: parse_expr on the answer (with the variable and C), differentiated
    # and compared through simplify with parse_expr on metadata["integrand"].
    variable, integrand = metadata.get("variable"), metadata.get("integrand")
    if not isinstance(variable, str) or not isinstance(integrand, str):
        return None
    return _letters([variable, "C"]), (integrand,)


PARSED_TASKS: dict[str, Callable[[str, dict], Inputs | None]] = {
    "countdown": _no_names,
    "puzzle24": _no_names,
    "polynomial_multiplication": _polynomial,
    "simple_integration": _integration,
}

ACCEPTED_TASKS = SAFE_TASKS | frozenset(PARSED_TASKS)


def unsupported_tasks_error(tasks: set[str]) -> str | None:
    """An error message naming the tasks that are not accepted (and the accepted ones), or None."""
    refused = sorted(t for t in tasks if t not in ACCEPTED_TASKS)
    if not refused:
        return None
    return (f"reasoning-gym task(s) {', '.join(refused)} are not accepted: the verifier runs only task "
            f"scorers known to be safe on model output. Accepted tasks: {', '.join(sorted(ACCEPTED_TASKS))} "
            "(see components/reward/gym_tasks.py)")


def scorer_inputs(task: str, gold: str, metadata: dict) -> Inputs | None:
    """For a PARSED_TASKS task: (allowed names, reference strings its scorer parses), else None."""
    spec = PARSED_TASKS.get(task)
    return None if spec is None else spec(gold, metadata if isinstance(metadata, dict) else {})


def _letters(names: Any) -> frozenset[str]:
    return frozenset(n for n in names if isinstance(n, str) and re.fullmatch(r"[A-Za-z]", n))


def _single_letters(text: str) -> list[str]:
    return re.findall(r"(?<![\w.])[A-Za-z](?!\w)", text)


# --- the whitelist parser -----------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 1000  # polynomial products with large coefficients run to a few hundred
MAX_EXPRESSION_NODES = 400
MAX_EXPRESSION_DEPTH = 12  # bracket nesting
MAX_POWER = 64  # a literal integer exponent, nested powers multiplied out: (x**8)**8 at most
_EXPRESSION_CHARS = re.compile(r"[0-9A-Za-z .+\-*/()]+")  # no quotes, underscores, commas, brackets


def is_plain_arithmetic(expr: str, names: frozenset[str] = frozenset()) -> bool:
    """Whether `expr` is only int/float literals, `names`, + - * / **, unary signs and parentheses.

    Checked on Python's syntax tree (the grammar parse_expr reads), after a character whitelist, so
    no call, attribute, subscript, lambda, comprehension, string or keyword can pass. Exponents must
    be integer literals whose nested product stays within MAX_POWER, so 9**9**9 is refused.
    """
    if not isinstance(expr, str) or len(expr) > MAX_EXPRESSION_CHARS or not _EXPRESSION_CHARS.fullmatch(expr):
        return False
    depth = deepest = 0
    for ch in expr:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_EXPRESSION_DEPTH:
        return False
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        return False
    return _allowed(tree.body, names, 1)


def _allowed(node: ast.AST, names: frozenset[str], power: int) -> bool:
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float)  # not bool, complex, str or bytes
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, (ast.UAdd, ast.USub)) and _allowed(node.operand, names, power)
    if not isinstance(node, ast.BinOp):
        return False
    if isinstance(node.op, ast.Pow):
        exponent = _integer_literal(node.right)
        if exponent is None or power * max(abs(exponent), 1) > MAX_POWER:
            return False
        return _allowed(node.left, names, power * max(abs(exponent), 1))
    return (isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div))
            and _allowed(node.left, names, power) and _allowed(node.right, names, power))


def _integer_literal(node: ast.AST) -> int | None:
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign *= -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sign * node.value
    return None
