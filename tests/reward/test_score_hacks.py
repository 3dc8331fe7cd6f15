"""Reward hacks and false negatives of the math verifier, and references too costly to verify.

Each row is (completion's boxed answer, reference, expected reward), scored through compute_score
(what verl and TRL call) and through a ScoringPool (what the pipeline uses). Before the normaliser
(components/reward/normalize.py), juxtaposed numbers were added (`47 38` "equalled" 85), a
thin-space thousands group was read as a sum (`12\\,345` "equalled" 357 and not 12345), and a
decimal matched an irrational or repeating reference within math-verify's float tolerance. Before
the pre-filter's cost estimate (components/reward/guards.py), the combinatorial answers below cost
a worker its whole timeout (as a reference, every completion's), and data validation let them in.
"""

from __future__ import annotations

import pandas as pd
import pytest

from components.data.validate import ANSWER_WITHIN_LIMITS, check_rows
from components.reward.guards import unsafe_reason
from components.reward.pool import ScoringPool
from components.reward.score import compute_score, is_verifiable

MATH = "HuggingFaceH4/MATH-500"
HACKS = [  # must score 0
    ("47 38", "85"), ("1 2 3 4", "10"), ("4\\ 5", "9"), ("4~5", "9"), ("4\\quad 5", "9"), ("4\\hspace{1em}5", "9"),
    ("12\\,345", "357"), ("12\\,34", "46"), ("0.333333", "\\frac{1}{3}"), ("1.414214", "\\sqrt{2}"),
    ("3.14159", "\\pi"), ("6.283185", "2\\pi"), ("0.3333333333", "1/3"),
]
RIGHT = [  # must score 1
    ("12\\,345", "12345"), ("12{,}345", "12345"), ("10,\\!080", "10080"), ("1\\;000", "1000"),
    ("1\\,000\\,000", "10^6"), ("12\\,345.5", "\\frac{24691}{2}"), ("0.5", "\\frac{1}{2}"), ("-0.25", "-\\frac14"),
    ("2.5", "\\frac52"), ("5.0", "5"), ("\\frac{1}{3}", "1/3"), ("\\frac 1 2", "0.5"), ("0.33", "0.33"),
    ("\\frac{33}{100}", "0.33"), ("12345", "12\\,345"),
]
# Cost 13-85 s each before the estimate (9^{99}! and (999*999*999)! took 15 s through compute_score).
COSTLY = ["\\binom{9999}{4999}^{9999}", "9^{99}!", "(999*999*999)!", "(999*999)!", "\\binom{9999}{4999}^{1000}"]
TABLE = [(a, r, 0.0) for a, r in HACKS] + [(a, r, 1.0) for a, r in RIGHT] + [(a, "5", 0.0) for a in COSTLY]
IDS = [f"{a} vs {r} -> {int(e)}" for a, r, e in TABLE]


def _box(answer: str) -> str:
    return f"so the answer is \\boxed{{{answer}}}."


@pytest.mark.parametrize("answer, reference, expected", TABLE, ids=IDS)
def test_compute_score(answer, reference, expected):
    assert compute_score(MATH, _box(answer), reference) == expected


def test_the_pool_agrees_and_costly_answers_are_refused_without_a_timeout():
    with ScoringPool(workers=2, timeout_s=10.0) as pool:
        scores = pool.score([MATH] * len(TABLE), [_box(a) for a, _, _ in TABLE], [r for _, r, _ in TABLE])
        assert (pool.timeouts, pool.crashes, pool.errors) == (0, 0, 0)
    assert scores == [e for *_, e in TABLE]


@pytest.mark.parametrize("answer", COSTLY)
def test_the_cost_estimate_names_the_number_of_digits(answer):
    assert "digits" in (unsafe_reason(answer) or "")


def test_limits_stay_verifiable():
    # Just inside the estimate (MAX_DIGITS): sympy builds these in well under a second.
    for big in ("999!", "9^{9999}", "\\binom{9999}{4999}", "99^{9999}", "\\binom{9999}{4999}^{30}"):
        assert unsafe_reason(big) is None, big
    assert is_verifiable("math", "\\binom{9999}{4999}")


def test_data_validation_refuses_a_costly_or_juxtaposed_reference_naming_the_rows():
    rows = pd.DataFrame({
        "id": ["ok-1", "costly-2", "juxtaposed-3", "ok-4"],
        "prompt": ["a?", "b?", "c?", "d?"],
        "answer": ["\\frac{1}{2}", "\\binom{9999}{4999}^{9999}", "47 38", "12\\,345"],
        "source": [MATH] * 4,
    })
    failed = {description: ids for description, _, ids in check_rows(rows, 1000)}
    assert failed[ANSWER_WITHIN_LIMITS] == ["costly-2", "juxtaposed-3"]
    assert failed["answer parseable by the verifier"] == ["costly-2", "juxtaposed-3"]


@pytest.mark.parametrize("task", ["chain_sum", "products", "decimal_chain_sum", "gcd"])
@pytest.mark.parametrize("reference", ["NaN", "Infinity", "-inf", "sNaN"])
def test_non_finite_references_of_numeric_tasks_are_refused(task, reference):
    assert not is_verifiable(f"reasoning_gym/{task}", reference)
    assert is_verifiable(f"reasoning_gym/{task}", "-1,234")
