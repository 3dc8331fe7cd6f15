"""The verifier on the real benchmark files (verl layout), scored exactly as verl would call it.

Self: each problem's reference answer, as the last of two boxes in a short completion, and the
worked solution where the file has one (MATH-500 stores it as the ground truth), must score 1.0
against the problem's own ground truth for >= 99.5 % of problems.

Cross: problem i's ground truth against problem i+k's reference answer (k = 1 and 7, two
derangements) must score 0.0 for >= 99 % of pairs. Pairs whose ground truths are equal as strings
after removing whitespace are skipped; pairs that differ as text but mean the same (5 and x=5,
30^\\circ and 30) are kept and count against the rate, so the threshold leaves room for them.

Run with -s to see the rates; failing assertions list the offending problems.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest

from components.reward.extract import reference_answers
from components.reward.score import compute_score

BENCH = Path(__file__).resolve().parents[2] / "data" / "benchmarks"
FILES = ("math500", "aime25", "amc23")
SELF_MIN = 0.995
CROSS_MIN = 0.99
SHIFTS = (1, 7)


@functools.lru_cache(maxsize=None)
def _load(name: str) -> pd.DataFrame:
    df = pd.read_parquet(BENCH / f"{name}.parquet")
    truths = [rm["ground_truth"] for rm in df["reward_model"]]  # as stored: a one-element array
    answers = [reference_answers(t) for t in truths]
    assert all(len(a) == 1 for a in answers), f"{name}: a ground truth without a usable answer"
    return pd.DataFrame({
        "source": df["data_source"].astype(str),
        "truth": truths,
        "answer": [a[0] for a in answers],
        # MATH-500's answer column is the worked solution; the others hold the bare answer.
        "solution": [s if "\\boxed" in str(s) else None for s in df["answer"]],
    })


def _completion(answer: str, distractor: str) -> str:
    return (f"Let me think. A first guess is $\\boxed{{{distractor}}}$, but checking again, "
            f"the final answer is $\\boxed{{{answer}}}$.")


def _rate(ok: list[bool]) -> float:
    return sum(ok) / len(ok)


def _report(failures: list[str]) -> str:
    return "\n".join(failures[:30]) + (f"\n... and {len(failures) - 30} more" if len(failures) > 30 else "")


@pytest.mark.parametrize("name", FILES)
def test_reference_answers_verify_against_their_own_ground_truth(name):
    df = _load(name)
    n = len(df)
    failures = []
    answer_ok = []
    for i, row in enumerate(df.itertuples()):
        distractor = df["answer"].iloc[(i + 1) % n]
        ok = compute_score(row.source, _completion(row.answer, distractor), row.truth) == 1.0
        answer_ok.append(ok)
        if not ok:
            failures.append(f"answer   #{i}: {row.answer!r}")
    solutions = df[df["solution"].notna()]
    solution_ok = []
    for i, row in zip(solutions.index, solutions.itertuples()):
        ok = compute_score(row.source, row.solution, row.truth) == 1.0
        solution_ok.append(ok)
        if not ok:
            failures.append(f"solution #{i}: answer {row.answer!r}")
    answer_rate = _rate(answer_ok)
    solution_rate = _rate(solution_ok) if solution_ok else 1.0
    summary = f"{name}: self-verification {answer_rate:.4f} of {n} reference answers"
    if solution_ok:
        summary += f", {solution_rate:.4f} of {len(solution_ok)} worked solutions"
    print(summary)
    assert answer_rate >= SELF_MIN and solution_rate >= SELF_MIN, f"{summary}; failures:\n{_report(failures)}"


@pytest.mark.parametrize("name", FILES)
def test_other_problems_answers_are_rejected(name):
    df = _load(name)
    n = len(df)
    rejected, failures, skipped = [], [], 0
    for shift in SHIFTS:
        for i in range(n):
            j = (i + shift) % n
            truth_i, truth_j = df["answer"].iloc[i], df["answer"].iloc[j]
            if "".join(truth_i.split()) == "".join(truth_j.split()):
                skipped += 1
                continue
            score = compute_score(df["source"].iloc[i], _completion(truth_j, truth_i), df["truth"].iloc[i])
            rejected.append(score == 0.0)
            if score != 0.0:
                failures.append(f"truth #{i} {truth_i!r} accepted #{j}'s answer {truth_j!r}")
    rate = _rate(rejected)
    summary = (f"{name}: cross-rejection {rate:.4f} of {len(rejected)} pairs "
               f"({skipped} pairs with equal ground truths skipped)")
    print(summary + "".join(f"\n  {f}" for f in failures))
    assert rate >= CROSS_MIN, f"{summary}; failures:\n{_report(failures)}"
