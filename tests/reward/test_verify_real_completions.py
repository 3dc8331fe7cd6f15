"""The math verifier on answers in the forms real instruct models write (Qwen and Llama solutions to
GSM8K, MATH, OlympiadBench and Omni-MATH problems), one class per table: each right answer must
score 1.0 and each opposite case 0.0. The rules are components/reward/normalize.py (percent, text
answers), components/reward/answer_forms.py (named value, interval, ordered list, unevaluated
arithmetic) and the multiple-box policy of components/reward/verify.py; docs/verifiers.md says what
each accepts and refuses. Scored in-process (score_and_error), the path every entry point shares.
"""

from __future__ import annotations

import pandas as pd
import pytest

from components.data.validate import check_rows
from components.reward.verify import score_and_error

MATH = "HuggingFaceH4/MATH-500"


def _solution(answer: str) -> str:
    return f"Working through the problem step by step.\n\nTherefore, the final answer is $\\boxed{{{answer}}}$."


def _score(completion: str, reference: str) -> float:
    score, error = score_and_error(MATH, completion, reference)
    assert error is None
    return score


CLASSES = {
    "percent": [
        ("8\\%", "8 \\%", 1.0), ("17.5 \\%", "17.5%", 1.0), ("198", "198\\%", 1.0), ("25", "25\\%", 1.0),
        ("20%", "20", 1.0), ("12.5\\%", "12.5", 1.0),
        ("21\\%", "20\\%", 0.0), ("0.08", "8\\%", 0.0), ("5\\% 6", "56", 0.0), ("5\\%6", "56", 0.0),
    ],
    "named value": [
        ("|r-s| = 16", "16", 1.0), ("E(2020,1993) = 76", "76", 1.0), ("\\frac{28}{4}=7", "7", 1.0),
        ("a+b = 7", "7", 1.0), ("T(10) = 2", "2", 1.0),
        ("3+4=8", "8", 0.0), ("x+1=0", "0", 0.0), ("2x = 6", "6", 0.0), ("5x-7y+11z+4=0", "0", 0.0),
        ("x^2 = 4", "4", 0.0), ("|r-s| = 15", "16", 0.0), ("E(2020,1993) = 75", "76", 0.0),
    ],
    "interval": [
        ("\\tfrac12 \\le x \\le 8", "[1/2, 8]", 1.0), ("x > 3", "(3, \\infty)", 1.0),
        ("-2 < x \\le 5", "(-2, 5]", 1.0),
        ("\\tfrac12 < x \\le 8", "[1/2, 8]", 0.0), ("x \\le y \\le 8", "[1/2, 8]", 0.0), ("x^2 < 4", "(-2, 2)", 0.0),
    ],
    "text in the reference": [
        ("A,D", "\\text{A,D}", 1.0), ("A, D", "\\text{(A), (D)}", 1.0), ("36", "\\text{36 square inches}", 1.0),
        ("36", "36 \\text{ square inches}", 1.0),
        ("A,C", "\\text{A,D}", 0.0), ("37", "\\text{36 square inches}", 0.0), ("\\text{nylevE}", "\\text{Evelyn}", 0.0),
    ],
    "ordered list": [
        ("2, 4, 3", "2,4,3", 1.0), ("(2, 4, 3)", "2,4,3", 1.0), ("3, 1, 2", "1,2,3", 1.0),
        ("2, 3, 4", "2,4,3", 0.0), ("(2, 3, 4)", "2,4,3", 0.0), ("\\{2, 4, 3\\}", "2,4,3", 0.0),
    ],
    "unevaluated arithmetic": [
        ("\\frac{3}{4}", "\\frac34", 1.0), ("0.75", "\\frac34", 1.0), ("x = 5", "5", 1.0), ("2^{10}", "1024", 1.0),
        ("2.5 \\times 10^{6}", "2500000", 1.0), ("\\frac{6}{8}", "\\frac{6}{8}", 1.0),
        ("\\frac{6}{8}", "\\frac34", 0.0), ("2+3", "5", 0.0), ("3 \\cdot 4", "12", 0.0), ("x = 2+3", "5", 0.0),
        ("\\frac{10}{2}", "5", 0.0),
    ],
    # The hacks the normaliser closed must not come back through the rules above.
    "earlier hacks": [
        ("47 38", "85", 0.0), ("4\\ 5 = 9", "9", 0.0), ("x = 47 38", "85", 0.0), ("47\\% 38", "85", 0.0),
        ("\\text{47 38}", "85", 0.0), ("0.333333", "\\frac{1}{3}", 0.0), ("12\\,345\\%", "357", 0.0),
    ],
}
TABLE = [(name, *row) for name, rows in CLASSES.items() for row in rows]


@pytest.mark.parametrize("rule, answer, reference, expected", TABLE,
                         ids=[f"{n}: {a} vs {r} -> {int(e)}" for n, a, r, e in TABLE])
def test_each_class_scores_as_stated(rule, answer, reference, expected):
    assert _score(_solution(answer), reference) == expected


BOXES = [
    ("The two solutions are $\\boxed{3}$ and $\\boxed{4}$.", "3, 4", 1.0),
    ("So $x = \\boxed{3}$, $\\boxed{4}$, $\\boxed{5}$.", "3,4,5", 1.0),
    ("The answers are \\boxed{3} \\text{ and } \\boxed{4}.", "3 \\text{ and } 4", 1.0),
    ("The answer is $\\boxed{3, 4}$.", "3, 4", 1.0),
    # A guess boxed earlier, with reasoning between, is not part of the final answer.
    ("A first guess is $\\boxed{3}$, but checking again, the answer is $\\boxed{4}$.", "3, 4", 0.0),
    # The reference is no list: the last box alone is the answer.
    ("Either $\\boxed{3}$ or $\\boxed{4}$.", "3", 0.0),
    ("Either $\\boxed{3}$ or $\\boxed{4}$.", "4", 1.0),
    ("$\\boxed{3}$ and $\\boxed{5}$.", "3, 4", 0.0),
    # Order still counts for an ordered reference.
    ("$\\boxed{2}$, $\\boxed{3}$, $\\boxed{4}$", "2,4,3", 0.0),
    ("$\\boxed{2}$, $\\boxed{4}$, $\\boxed{3}$", "2,4,3", 1.0),
]


@pytest.mark.parametrize("completion, reference, expected", BOXES, ids=[f"{r} -> {int(e)}: {c}" for c, r, e in BOXES])
def test_an_answer_split_over_boxes_is_read_whole_when_the_reference_is_a_list(completion, reference, expected):
    assert _score(completion, reference) == expected


def test_data_validation_names_references_that_do_not_match_themselves():
    rows = pd.DataFrame({
        "id": ["ok-1", "power-2", "log-3", "ok-4"],
        "prompt": [f"question {i}" for i in range(4)],
        "answer": ["\\frac{3}{4}", "2019^{-1/2019}", "\\log_{2008} 2009", "2,4,3"],
        "source": [MATH] * 4,
    })
    failed = {description: ids for description, _, ids in check_rows(rows, 10_000)}
    assert failed["answer parseable by the verifier"] == ["power-2", "log-3"]
