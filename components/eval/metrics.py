"""Pure statistics for benchmark evaluation: pass@k, mean@k, maj@k and per-problem summaries.

Everything here works on already-scored outputs (booleans, extracted answers, lengths), so it
runs without a model and is shared by evaluation, comparison reports and the promotion gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("greedy_correct", "sample_correct", "sample_answers", "sample_lengths")
# The summary's metrics a user compares across runs: each is a column of `dvc exp show`. The rest of the
# summary (lengths, num_problems) stays in reports/eval/summary.csv and MLflow.
COMPARED_PREFIXES = ("pass@", "mean@", "maj@")


def compared_metrics(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """model -> benchmark -> summary, keeping only pass@1, mean@k, pass@k and maj@k (the DVC metrics file)."""
    return {model: {bench: {k: v for k, v in summary.items() if k.startswith(COMPARED_PREFIXES)}
                    for bench, summary in benches.items()} for model, benches in results.items()}


def _check_count(name: str, value: int) -> None:
    # bool is an int subclass; a stray True/False here is almost always a caller bug.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): P(at least one of k draws without replacement is correct).

    n samples were drawn and c were correct. 1 - C(n-c, k) / C(n, k) is evaluated as
    1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        _check_count(name, value)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k must be <= n (k={k}, n={n})")
    if c > n:
        raise ValueError(f"c must be <= n (c={c}, n={n})")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i))


def mean_at_k(correct: Sequence[bool]) -> float:
    """Accuracy averaged over the k samples of one problem."""
    values = np.asarray(list(correct), dtype=bool)
    if values.size == 0:
        raise ValueError("correct must not be empty")
    return float(values.mean())


def _strip_key(answer: str) -> str:
    return answer.strip()


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool],
             key: Callable[[str], Any] | None = None) -> float:
    """1.0 if the majority-vote answer over the k samples is correct, else 0.0.

    Answers are grouped by key(answer) (default: whitespace-stripped text); pass an equivalence
    such as a canonical math form to merge spellings of one value. None answers, and answers whose
    key is None, abstain; if every sample abstains the vote is 0.0. Ties go to the tied group whose
    first member appears earliest in `answers`, so the result is deterministic. The vote counts as
    correct iff any sample in the winning group was scored correct (groups are meant to be
    equivalence classes, so their members should agree; "any" is the forgiving choice if a key is
    coarser than the scorer).
    """
    answers, correct = list(answers), list(correct)
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct must have the same length ({len(answers)} != {len(correct)})")
    if not answers:
        raise ValueError("answers must not be empty")
    key_fn = key if key is not None else _strip_key
    votes: dict[Any, int] = {}  # insertion order = first appearance, which breaks ties
    group_correct: dict[Any, bool] = {}
    for answer, ok in zip(answers, correct):
        if answer is None:
            continue
        group = key_fn(answer)
        if group is None:
            continue
        votes[group] = votes.get(group, 0) + 1
        group_correct[group] = group_correct.get(group, False) or bool(ok)
    if not votes:
        return 0.0
    best = max(votes.values())
    winner = next(g for g, count in votes.items() if count == best)
    return 1.0 if group_correct[winner] else 0.0


def _as_list(value: Any, column: str, row: int, k: int) -> list:
    # parquet round-trips list columns as numpy arrays; accept any sequence of length k.
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{column} at row {row} must be a sequence of length {k}, got {value!r}")
    items = list(value)
    if len(items) != k:
        raise ValueError(f"{column} at row {row} has length {len(items)}, expected k={k}")
    return items


def summarise(per_problem: pd.DataFrame, k: int,
              key: Callable[[str], Any] | None = None) -> dict[str, float]:
    """Benchmark metrics over a per-problem table with exactly k samples per problem.

    Columns: greedy_correct (bool), sample_correct / sample_answers / sample_lengths (length-k
    sequences). Returns pass@1 (greedy decoding), mean@k, pass@k (unbiased, which with n = k
    samples is the fraction of problems with any correct sample), maj@k, mean_length (mean
    sampled completion length, over all samples) and num_problems. When k == 1 the sampled
    pass@1 would collide with greedy pass@1 and equals mean@1, so it is left out.
    `key` is forwarded to maj_at_k.
    """
    _check_count("k", k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    missing = [c for c in REQUIRED_COLUMNS if c not in per_problem.columns]
    if missing:
        raise ValueError(f"per_problem is missing columns {missing}")
    if len(per_problem) == 0:
        raise ValueError("per_problem must have at least one row")

    greedy, means, passes, majs, lengths = [], [], [], [], []
    for row, (g, sc, sa, sl) in enumerate(zip(*(per_problem[c] for c in REQUIRED_COLUMNS))):
        sc = [bool(x) for x in _as_list(sc, "sample_correct", row, k)]
        sa = _as_list(sa, "sample_answers", row, k)
        sl = _as_list(sl, "sample_lengths", row, k)
        greedy.append(bool(g))
        means.append(mean_at_k(sc))
        passes.append(pass_at_k(k, sum(sc), k))
        majs.append(maj_at_k(sa, sc, key=key))
        lengths.extend(float(x) for x in sl)

    out = {"pass@1": float(np.mean(greedy)), f"mean@{k}": float(np.mean(means))}
    if k > 1:
        out[f"pass@{k}"] = float(np.mean(passes))
    out[f"maj@{k}"] = float(np.mean(majs))
    out["mean_length"] = float(np.mean(lengths))
    out["num_problems"] = float(len(per_problem))
    return out


def summarise_by_source(per_problem: pd.DataFrame, k: int,
                        key: Callable[[str], Any] | None = None) -> dict[str, dict[str, float]]:
    """summarise() per data_source value (keys sorted, as strings); overall numbers come from summarise()."""
    if "data_source" not in per_problem.columns:
        raise ValueError("per_problem has no data_source column")
    sources = per_problem["data_source"].astype(str)
    return {source: summarise(per_problem[sources == source], k, key=key)
            for source in sorted(sources.unique())}
