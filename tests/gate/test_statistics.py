"""Paired bootstrap, McNemar, the promotion gate's verdict and its markdown report."""

import math

import numpy as np
import pytest

import components.gate.statistics as gate_statistics
from components.gate.statistics import compare, markdown_report, mcnemar, paired_bootstrap, verdict


def _pair(n: int, a_right: int, b_right: int) -> tuple[np.ndarray, np.ndarray]:
    """a solves the first a_right problems, b the first b_right: every disagreement favours one side."""
    a, b = np.zeros(n), np.zeros(n)
    a[:a_right], b[:b_right] = 1, 1
    return a, b


def test_identical_models_have_zero_diff_and_fail_the_gate():
    rng = np.random.default_rng(1)
    a = (rng.random(300) < 0.6).astype(float)
    r = paired_bootstrap(a, a.copy(), num_resamples=2000)
    assert (r.diff, r.ci_low, r.ci_high) == (0.0, 0.0, 0.0)
    assert r.p_value == 1.0  # (1 + 2000) / (2000 + 1)
    v = verdict(r, min_gain=0.0, confidence=0.95)
    assert not v.passed and "<= min_gain +0.000" in v.reason


def test_clear_improvement_on_500_problems_passes():
    a, b = _pair(500, 200, 260)
    r = paired_bootstrap(a, b)
    assert r.n == 500 and r.mean_a == 0.4 and r.mean_b == 0.52 and r.diff == pytest.approx(0.12)
    # every resample has diff >= 0, and diff == 0 needs all 500 draws to miss the 60 wins (~1e-28)
    assert r.p_value == pytest.approx(1 / 10001)
    # the percentile CI is close to the normal one: diff +- 1.96 * sd(d) / sqrt(n)
    half = 1.96 * np.std(b - a) / math.sqrt(500)
    assert r.ci_low == pytest.approx(0.12 - half, abs=0.004)
    assert r.ci_high == pytest.approx(0.12 + half, abs=0.004)
    v = verdict(r, min_gain=0.0, confidence=0.95)
    assert v.passed
    assert v.reason.startswith(f"gain +0.120 [95% CI {r.ci_low:+.3f}, {r.ci_high:+.3f}]")
    assert not verdict(r, min_gain=0.15, confidence=0.95).passed  # significant but smaller than asked


def test_tiny_noisy_difference_fails():
    rng = np.random.default_rng(7)
    a = (rng.random(500) < 0.5).astype(float)
    b = a.copy()
    wrong, right = np.flatnonzero(a == 0), np.flatnonzero(a == 1)
    b[wrong[:21]] = 1  # 21 gains
    b[right[:20]] = 0  # 20 losses: net +1 problem
    r = paired_bootstrap(a, b)
    assert r.diff == pytest.approx(0.002)
    assert r.ci_low < 0 < r.ci_high
    assert 0.3 < r.p_value < 0.6
    assert not verdict(r, min_gain=0.0, confidence=0.95).passed
    m = mcnemar(a, b)
    assert (m.b01, m.b10) == (21, 20) and m.p_value == 1.0


def test_two_problem_bootstrap_distribution():
    # d = [1, 0]: a resample's mean diff is 0, 0.5, 1 with probability 1/4, 1/2, 1/4
    r = paired_bootstrap([0, 0], [1, 0], num_resamples=10000, seed=3)
    values, counts = np.unique(r.bootstrap_diffs, return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0]
    assert counts / 10000 == pytest.approx([0.25, 0.5, 0.25], abs=0.02)
    assert r.p_value == pytest.approx((1 + counts[0]) / 10001)
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)


def test_ci_coverage_is_near_nominal():
    # 200 independent datasets whose true paired difference is 0.1; the 90% CI should cover it ~90%
    rng = np.random.default_rng(11)
    covered = 0
    for i in range(200):
        d = rng.choice([-1.0, 0.0, 1.0], size=80, p=[0.1, 0.7, 0.2])
        a = (d == -1).astype(float)
        r = paired_bootstrap(a, a + d, num_resamples=1000, confidence=0.9, seed=i)
        covered += r.ci_low <= 0.1 <= r.ci_high
    assert 0.82 <= covered / 200 <= 0.97


def test_bootstrap_is_deterministic_and_chunking_does_not_change_it(monkeypatch):
    a, b = _pair(50, 20, 26)
    r1 = paired_bootstrap(a, b, num_resamples=3000, seed=5)
    r2 = paired_bootstrap(a, b, num_resamples=3000, seed=5)
    assert r1 == r2 and np.array_equal(r1.bootstrap_diffs, r2.bootstrap_diffs)
    assert not np.array_equal(r1.bootstrap_diffs, paired_bootstrap(a, b, num_resamples=3000, seed=6).bootstrap_diffs)
    monkeypatch.setattr(gate_statistics, "_CHUNK_ENTRIES", 120)  # 2 resamples per chunk
    assert np.array_equal(paired_bootstrap(a, b, num_resamples=3000, seed=5).bootstrap_diffs, r1.bootstrap_diffs)


def test_bootstrap_accepts_fractional_scores():
    r = paired_bootstrap([0.2, 0.4, 0.6], [0.3, 0.5, 0.7], num_resamples=500)
    assert r.diff == pytest.approx(0.1)
    assert r.ci_low == pytest.approx(0.1) and r.ci_high == pytest.approx(0.1)  # constant paired difference


@pytest.mark.parametrize("a, b, kwargs, match", [
    ([1, 0], [1, 0, 1], {}, r"a and b must score the same problems \(lengths 2 != 3\)"),
    ([], [], {}, "a must not be empty"),
    ([0, 1], [0, 2], {}, r"b must hold per-problem scores in \[0, 1\]"),
    ([0, np.nan], [0, 1], {}, r"a must hold"),
    ([[0, 1]], [[0, 1]], {}, "a must be one-dimensional"),
    ([0, 1], [1, 1], {"num_resamples": 0}, "num_resamples"),
    ([0, 1], [1, 1], {"confidence": 1.0}, "confidence"),
])
def test_bootstrap_errors_name_the_argument(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, b, **kwargs)


def test_mcnemar_hand_computed():
    a, b = _pair(20, 5, 10)  # b01 = 5, b10 = 0: p = 2 * 2**-5
    m = mcnemar(a.astype(bool), b.astype(bool))
    assert (m.n, m.b01, m.b10) == (20, 5, 0)
    assert m.p_value == pytest.approx(0.0625)
    assert m.statistic == pytest.approx(16 / 5)  # (|5 - 0| - 1)^2 / 5

    a = np.array([1] * 2 + [0] * 8 + [1] * 4)  # a right, b wrong twice; a wrong, b right 8 times
    b = np.array([0] * 2 + [1] * 8 + [1] * 4)
    m = mcnemar(a, b)
    assert (m.b01, m.b10) == (8, 2)
    assert m.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109375
    assert m.statistic == pytest.approx(2.5)  # (6 - 1)^2 / 10

    m = mcnemar([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])  # 3 vs 3: 2 * 42/64 > 1 -> capped
    assert m.p_value == 1.0


def test_mcnemar_no_discordance_and_symmetry():
    m = mcnemar([1, 0, 1], [1, 0, 1])
    assert (m.b01, m.b10, m.statistic, m.p_value) == (0, 0, 0.0, 1.0)
    a, b = _pair(30, 4, 11)
    assert mcnemar(a, b).p_value == mcnemar(b, a).p_value


def test_mcnemar_large_counts_agree_with_corrected_chi_square():
    a = np.r_[np.ones(450), np.zeros(550)]
    b = np.r_[np.zeros(450), np.ones(550)]
    m = mcnemar(a, b)
    assert (m.b01, m.b10) == (550, 450)
    assert m.statistic == pytest.approx(99 ** 2 / 1000)
    chi2_p = math.erfc(math.sqrt(m.statistic / 2))  # chi-square(1) survival function
    assert m.p_value == pytest.approx(chi2_p, rel=0.05)
    assert 0.001 < m.p_value < 0.003


def test_mcnemar_errors_name_the_argument():
    with pytest.raises(ValueError, match="b_correct must be boolean"):
        mcnemar([1, 0], [1, 0.5])
    with pytest.raises(ValueError, match="a_correct and b_correct"):
        mcnemar([1, 0], [1])


def test_verdict_boundary_is_strict_and_confidence_is_recomputed():
    r = paired_bootstrap([0], [1], num_resamples=100)  # every resample diff is exactly 1
    assert not verdict(r, min_gain=1.0, confidence=0.95).passed
    assert verdict(r, min_gain=0.99, confidence=0.95).passed
    a, b = _pair(200, 80, 95)
    r = paired_bootstrap(a, b, confidence=0.95)
    narrow, wide = verdict(r, min_gain=0.0, confidence=0.5), verdict(r, min_gain=0.0, confidence=0.999)
    assert (narrow.ci_low, narrow.ci_high) == r.ci(0.5)
    assert wide.ci_low < r.ci_low < narrow.ci_low < narrow.ci_high < r.ci_high < wide.ci_high
    assert "[50% CI" in narrow.reason and "[99.9% CI" in wide.reason
    with pytest.raises(ValueError, match="min_gain"):
        verdict(r, min_gain=float("nan"), confidence=0.95)
    with pytest.raises(ValueError, match="confidence"):
        verdict(r, min_gain=0.0, confidence=0.0)


def test_compare_and_markdown_report():
    a, b = _pair(500, 200, 260)
    good = compare("rl vs sft", a, b, num_resamples=2000)
    same = compare("control vs sft", a, a.copy(), num_resamples=2000)
    soft = compare("scores", a * 0.5, b * 0.5, num_resamples=2000)
    assert good.verdict.passed and not same.verdict.passed
    assert good.mcnemar is not None and (good.mcnemar.b01, good.mcnemar.b10) == (60, 0)
    assert soft.mcnemar is None  # not 0/1 correctness

    report = markdown_report([good, same, soft])
    lines = report.splitlines()
    assert lines[0] == "## Promotion gate"
    assert "| comparison | n | accuracy a | accuracy b | diff | CI | p-value | McNemar p | verdict |" in lines
    row = next(line for line in lines if line.startswith("| rl vs sft |"))
    assert row.startswith("| rl vs sft | 500 | 0.400 | 0.520 | +0.120 | 95% [")
    assert row.endswith(f"| {1 / 2001:.2e} | {2 * 0.5 ** 60:.2e} | PASS (min_gain +0.000) |")
    assert "| control vs sft | 500 | 0.400 | 0.400 | +0.000 | 95% [+0.000, +0.000] | 1.000 | 1.000 | FAIL" in report
    assert "| scores | 500 | 0.200 | 0.260 |" in report and "| - | PASS" in report
    assert "Gate FAILED" in report
    assert "Gate PASSED" in markdown_report([good], title="t")
    assert "Gate FAILED" in markdown_report([])  # an empty gate fails closed


def test_t95_interval_is_the_mean_plus_minus_t_times_standard_error():
    from components.gate.statistics import t95_interval

    low, high = t95_interval([0.1, 0.3])  # mean 0.2, sd 0.1414, t(1) 12.706: +-1.2706
    assert (low, high) == (pytest.approx(0.2 - 1.2706, abs=1e-4), pytest.approx(0.2 + 1.2706, abs=1e-4))
    assert all(math.isnan(x) for x in t95_interval([0.5]))  # one seed: no spread to measure
