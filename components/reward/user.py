"""The user's reward functions (reward.functions), combined as TRL combines reward functions.

Each function is called positionally as fn(data_source, solution_str, ground_truth, extra_info), verl's
`compute_score` signature, and returns a number or verl's dict with a "score" entry. The item's reward
is sum_i weight_i * fn_i(...) (TRL's `reward_weights`); it takes the place of the built-in
correctness score. A function that raises, or returns something other than a finite real number,
adds 0 and the item is counted as a scoring error (reward/scoring_errors); the other functions'
terms still count. This runs in a scoring worker, under the item's deadline (components.reward.pool).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

from components.config.reward_functions import load_function

WeightedFunction = tuple[Callable[..., Any], float]


def load_functions(entries: Sequence[tuple[str, float]]) -> list[WeightedFunction]:
    """(function, weight) for each ("file.py:name" or "module:name", weight), as the config resolved them."""
    return [(load_function(spec), float(weight)) for spec, weight in entries]


def combined_score(functions: Sequence[WeightedFunction], data_source: str, solution_str: str,
                   ground_truth: Any, extra_info: dict | None) -> tuple[float, str | None]:
    """(sum of weight * score, None), or (the sum over the functions that gave a score, what went wrong)."""
    total, problems = 0.0, []
    for function, weight in functions:
        name = getattr(function, "__qualname__", repr(function))
        try:
            value = _finite(function(data_source, solution_str, ground_truth, extra_info))
        except Exception as exc:
            problems.append(f"{name} raised {type(exc).__name__}: {exc}")
            continue
        if value is None:
            problems.append(f"{name} returned no finite number")
        else:
            total += weight * value
    if not math.isfinite(total):  # finite terms whose weighted sum overflows
        return 0.0, f"the weighted sum overflowed ({total})"
    return total, "; ".join(problems) or None


def _finite(result: Any) -> float | None:
    """The score as a float, or None when it is not a finite real number (NaN, inf, a string, None...)."""
    if isinstance(result, dict) and "score" in result:  # verl's reward managers accept {"score": ..., ...}
        result = result["score"]
    if not isinstance(result, numbers.Real):
        return None
    value = float(result)
    return value if math.isfinite(value) else None
