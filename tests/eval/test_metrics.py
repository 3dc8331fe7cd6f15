"""pass@k, mean@k, maj@k and the per-problem summary."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from components.eval.metrics import maj_at_k, mean_at_k, pass_at_k, summarise, summarise_by_source


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (the first c correct) that hold a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration_of_all_subsets():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_hand_values_and_edge_cases():
    assert pass_at_k(2, 1, 1) == pytest.approx(0.5)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is c/n
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k
    # large n stays finite and matches the exact binomial ratio
    assert pass_at_k(200, 5, 10) == pytest.approx(1 - math.comb(195, 10) / math.comb(200, 10), rel=1e-12)


@pytest.mark.parametrize("args, name", [
    ((5, 2, 0), "k"), ((5, 2, 6), "k"), ((5, 6, 2), "c"), ((-1, 0, 1), "n"),
    ((5, -1, 1), "c"), ((5, 1, -2), "k"), ((5, 1, True), "k"), ((5.0, 1, 1), "n"),
])
def test_pass_at_k_errors_name_the_argument(args, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        pass_at_k(*args)


def test_mean_at_k():
    assert mean_at_k([True, False, True, True]) == 0.75
    assert mean_at_k(np.array([False, False])) == 0.0
    with pytest.raises(ValueError, match="correct"):
        mean_at_k([])


def test_maj_at_k_plain_majority():
    assert maj_at_k(["4", "5", "4"], [True, False, True]) == 1.0
    assert maj_at_k(["5", "4", "5"], [False, True, False]) == 0.0


def test_maj_at_k_groups_by_stripped_text():
    # " 5 " and "5" are one group of two, beating "4" (right) once
    assert maj_at_k(["4", " 5 ", "5\n"], [True, False, False]) == 0.0


def test_maj_at_k_tie_goes_to_first_appearing_answer():
    assert maj_at_k(["7", "3", "3", "7"], [True, False, False, True]) == 1.0
    assert maj_at_k(["3", "7", "7", "3"], [False, True, True, False]) == 0.0


def test_maj_at_k_none_abstains():
    # two Nones would outvote "4" if they counted
    assert maj_at_k([None, "4", None], [False, True, False]) == 1.0
    assert maj_at_k([None, None, None], [False, False, False]) == 0.0
    # a key that returns None also abstains
    assert maj_at_k(["x", "x", "2"], [False, False, True], key=lambda s: None if s == "x" else s) == 1.0


def test_maj_at_k_custom_key_merges_equivalent_answers():
    answers = ["1/2", "0.5", "0.25"]
    correct = [True, True, False]
    canonical = {"1/2": "0.5", "0.5": "0.5", "0.25": "0.25"}
    assert maj_at_k(answers, correct, key=canonical.__getitem__) == 1.0
    # without the key all three tie and the first ("0.25", wrong) wins; with it 1/2 = 0.5 wins 2-1
    assert maj_at_k(["0.25", "1/2", "0.5"], [False, True, True]) == 0.0
    assert maj_at_k(["0.25", "1/2", "0.5"], [False, True, True], key=canonical.__getitem__) == 1.0


def test_maj_at_k_correct_if_any_member_of_winning_group_is_correct():
    assert maj_at_k(["a", "a", "b"], [False, True, False]) == 1.0


def test_maj_at_k_errors():
    with pytest.raises(ValueError, match="answers and correct"):
        maj_at_k(["1", "2"], [True])
    with pytest.raises(ValueError, match="answers"):
        maj_at_k([], [])


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "greedy_correct": [True, False, True],
        "sample_correct": [[True, False, True, False], [False, False, False, False], [True, True, True, False]],
        "sample_answers": [["2", "3", "2", "3"], [None, "9", None, "8"], ["1", "1", "1", "0"]],
        "sample_lengths": [[10, 20, 30, 40], [5, 5, 5, 5], [1, 2, 3, 4]],
        "data_source": ["gsm8k", "math", "gsm8k"],
    })


def test_summarise_hand_computed():
    out = summarise(_table(), k=4)
    assert out == pytest.approx({
        "pass@1": 2 / 3,
        "mean@4": (0.5 + 0.0 + 0.75) / 3,
        "pass@4": 2 / 3,
        # row 0: tie "2"/"3" -> "2" (correct); row 1: tie "9"/"8" -> "9" (wrong); row 2: "1" (correct)
        "maj@4": 2 / 3,
        "mean_length": (100 + 20 + 10) / 12,
        "num_problems": 3.0,
    })


def test_summarise_accepts_numpy_arrays_from_parquet():
    df = _table()
    for col in ("sample_correct", "sample_answers", "sample_lengths"):
        df[col] = [np.array(v, dtype=object) for v in df[col]]
    assert summarise(df, k=4)["mean@4"] == pytest.approx(1.25 / 3)


def test_summarise_k1_keeps_greedy_pass_at_1():
    df = pd.DataFrame({"greedy_correct": [False, False], "sample_correct": [[True], [False]],
                       "sample_answers": [["1"], ["2"]], "sample_lengths": [[3], [5]]})
    out = summarise(df, k=1)
    assert out["pass@1"] == 0.0  # greedy, not overwritten by the sampled estimate
    assert out["mean@1"] == 0.5 and out["maj@1"] == 0.5
    assert set(out) == {"pass@1", "mean@1", "maj@1", "mean_length", "num_problems"}


def test_the_dvc_metrics_file_keeps_the_accuracy_metrics_only():
    """metrics/eval.json's leaves are `dvc exp show` columns: lengths and counts stay in reports/eval."""
    from components.eval.metrics import compared_metrics

    summary = {**summarise(_table(), k=4), "greedy_mean_length": 28.9}
    kept = compared_metrics({"rl": {"b": summary}, "sft": {"b": summary}})
    assert set(kept) == {"rl", "sft"} and set(kept["rl"]["b"]) == {"pass@1", "mean@4", "pass@4", "maj@4"}
    assert kept["rl"]["b"]["mean@4"] == summary["mean@4"]


def test_summarise_validation():
    with pytest.raises(ValueError, match="sample_lengths"):
        summarise(_table().drop(columns="sample_lengths"), k=4)
    with pytest.raises(ValueError, match="sample_correct at row 0 has length 4, expected k=3"):
        summarise(_table(), k=3)
    with pytest.raises(ValueError, match="at least one row"):
        summarise(_table().iloc[:0], k=4)
    with pytest.raises(ValueError, match="^k "):
        summarise(_table(), k=0)


def test_summarise_by_source():
    out = summarise_by_source(_table(), k=4)
    assert list(out) == ["gsm8k", "math"]
    assert out["gsm8k"]["num_problems"] == 2.0 and out["gsm8k"]["pass@1"] == 1.0
    assert out["gsm8k"]["mean@4"] == pytest.approx(0.625)
    assert out["math"] == pytest.approx({"pass@1": 0.0, "mean@4": 0.0, "pass@4": 0.0, "maj@4": 0.0,
                                         "mean_length": 5.0, "num_problems": 1.0})
    with pytest.raises(ValueError, match="data_source"):
        summarise_by_source(_table().drop(columns="data_source"), k=4)
