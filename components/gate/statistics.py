"""Statistics of model comparisons: is model b really better than model a on the same problems?

Used by the promotion gate (components/gate/promotion.py) and the PIPO-vs-GRPO comparison report
(components/compare). Inputs of the paired tests are per-problem scores of two models over the SAME problems in the same order (0/1
correctness or scores in [0, 1]). The promotion gate uses a paired bootstrap over problems; McNemar's exact
test on the discordant pairs is reported alongside as a second opinion. All randomness comes from
an explicit seed, so a gate decision is reproducible. t95_interval is the seed-level interval: a few
runs' values (one per seed), where the seeds' spread is the uncertainty.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Resampled index matrices are drawn in chunks of at most this many entries (~32 MB of int64),
# so memory stays bounded however many problems or resamples are asked for.
_CHUNK_ENTRIES = 1 << 22


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _scores(name: str, values: np.ndarray | Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name} must hold per-problem scores in [0, 1]")
    return arr


def _paired(a, b, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    a_arr, b_arr = _scores(names[0], a), _scores(names[1], b)
    if a_arr.size != b_arr.size:
        raise ValueError(f"{names[0]} and {names[1]} must score the same problems "
                         f"(lengths {a_arr.size} != {b_arr.size})")
    return a_arr, b_arr


def _t95(n: int) -> float:
    """Two-sided 95 % Student-t quantile for n samples (n - 1 degrees of freedom); beyond the table
    an approximation that is within 0.02 of the exact value."""
    table = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
    return table.get(n, 1.96 + 2.5 / max(n - 1, 1))


def t95_interval(values: Sequence[float]) -> tuple[float, float]:
    """95 % Student-t interval of the mean of `values` (e.g. one per seed); (nan, nan) for fewer than two."""
    if len(values) < 2:
        return math.nan, math.nan
    half = _t95(len(values)) * statistics.stdev(values) / math.sqrt(len(values))
    mean = statistics.mean(values)
    return mean - half, mean + half


@dataclass(frozen=True)
class PairedResult:
    """Paired bootstrap of diff = mean(b) - mean(a); ci_low/ci_high are at `confidence`."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # one-sided, for "b is not better than a"
    num_resamples: int
    seed: int
    # The sorted resampled differences, kept so a CI at another confidence needs no rerun.
    bootstrap_diffs: np.ndarray = field(repr=False, compare=False)

    def ci(self, confidence: float) -> tuple[float, float]:
        """Percentile interval of the resampled differences at `confidence` (two-sided)."""
        _check_confidence(confidence)
        alpha = 1.0 - confidence
        low, high = np.quantile(self.bootstrap_diffs, [alpha / 2, 1.0 - alpha / 2])
        return float(low), float(high)


def _resampled_diffs(d: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
    n = d.size
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ENTRIES // n)
    out = np.empty(num_resamples, dtype=np.float64)
    for start in range(0, num_resamples, rows):
        stop = min(start + rows, num_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = d[idx].sum(axis=1) / n
    return out


def paired_bootstrap(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], *,
                     num_resamples: int = 10000, confidence: float = 0.95, seed: int = 0) -> PairedResult:
    """Resample problems with replacement (same indices for both models) and look at mean(b) - mean(a).

    CI: percentile interval of the resampled differences. p_value: (1 + #{resampled diff <= 0}) /
    (num_resamples + 1), the add-one estimate of P(diff <= 0), so it is never exactly 0.
    """
    a_arr, b_arr = _paired(a, b)
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer)) or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")
    _check_confidence(confidence)
    diffs = np.sort(_resampled_diffs(b_arr - a_arr, int(num_resamples), seed))
    diffs.setflags(write=False)
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs, [alpha / 2, 1.0 - alpha / 2])
    p_value = (1 + int(np.count_nonzero(diffs <= 0.0))) / (num_resamples + 1)
    return PairedResult(n=int(a_arr.size), mean_a=float(a_arr.mean()), mean_b=float(b_arr.mean()),
                        diff=float(b_arr.mean() - a_arr.mean()), ci_low=float(low), ci_high=float(high),
                        confidence=float(confidence), p_value=float(p_value),
                        num_resamples=int(num_resamples), seed=int(seed), bootstrap_diffs=diffs)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired correctness. b01: a wrong and b right; b10: a right and b wrong."""

    n: int
    b01: int
    b10: int
    statistic: float  # continuity-corrected chi-square, for reference only
    p_value: float  # exact two-sided binomial p-value


def _binomial_tail(m: int, j: int) -> float:
    """P(X <= j) for X ~ Binomial(m, 1/2), exactly, as one rounding of an integer ratio."""
    term, total = 1, 1  # C(m, 0)
    for i in range(j):
        term = term * (m - i) // (i + 1)  # C(m, i+1), exact in integers
        total += term
    return total / (1 << m)


def mcnemar(a_correct: np.ndarray | Sequence[bool], b_correct: np.ndarray | Sequence[bool]) -> McNemarResult:
    """McNemar's test: under H0 each discordant problem favours b with probability 1/2.

    The p-value is always the exact two-sided binomial one, min(1, 2 * P(X <= min(b01, b10))),
    computed in integer arithmetic; it is valid for any count, so no chi-square switch-over is
    needed. The continuity-corrected chi-square statistic is reported but not used.
    """
    a_arr, b_arr = _paired(a_correct, b_correct, ("a_correct", "b_correct"))
    for name, arr in (("a_correct", a_arr), ("b_correct", b_arr)):
        if not np.all((arr == 0.0) | (arr == 1.0)):
            raise ValueError(f"{name} must be boolean (0/1) correctness")
    a_ok, b_ok = a_arr.astype(bool), b_arr.astype(bool)
    b01 = int(np.count_nonzero(~a_ok & b_ok))
    b10 = int(np.count_nonzero(a_ok & ~b_ok))
    m = b01 + b10
    statistic = (max(abs(b01 - b10) - 1, 0) ** 2) / m if m else 0.0
    p_value = min(1.0, 2.0 * _binomial_tail(m, min(b01, b10))) if m else 1.0
    return McNemarResult(n=int(a_arr.size), b01=b01, b10=b10, statistic=float(statistic), p_value=float(p_value))


@dataclass(frozen=True)
class Verdict:
    """Gate decision: passed iff the CI lower bound at `confidence` is strictly above min_gain."""

    passed: bool
    reason: str
    diff: float
    ci_low: float
    ci_high: float
    confidence: float
    min_gain: float
    p_value: float


def verdict(result: PairedResult, *, min_gain: float, confidence: float) -> Verdict:
    """Pass iff the lower end of the two-sided percentile CI at `confidence` exceeds min_gain.

    With min_gain = 0 this says the improvement is significant at one-sided level
    (1 - confidence) / 2; a positive min_gain also asks it to be at least that large. A lower
    bound exactly equal to min_gain fails (so identical models never pass at min_gain 0).
    """
    if not math.isfinite(min_gain):
        raise ValueError(f"min_gain must be finite, got {min_gain}")
    low, high = result.ci(confidence)
    passed = low > min_gain
    pct = f"{100 * confidence:g}%"
    head = f"gain {result.diff:+.3f} [{pct} CI {low:+.3f}, {high:+.3f}]"
    if passed:
        reason = f"{head}: lower bound {low:+.3f} > min_gain {min_gain:+.3f}"
    else:
        reason = f"{head}: lower bound {low:+.3f} <= min_gain {min_gain:+.3f}, improvement not established"
    return Verdict(passed=passed, reason=reason, diff=result.diff, ci_low=low, ci_high=high,
                   confidence=float(confidence), min_gain=float(min_gain), p_value=result.p_value)


@dataclass(frozen=True)
class Comparison:
    """One row of the gate report: model a (baseline) against model b (candidate)."""

    name: str
    paired: PairedResult
    mcnemar: McNemarResult | None
    verdict: Verdict


def compare(name: str, a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], *,
            min_gain: float = 0.0, confidence: float = 0.95, num_resamples: int = 10000,
            seed: int = 0) -> Comparison:
    """Bootstrap, verdict and (when both inputs are 0/1) McNemar for one baseline/candidate pair."""
    paired = paired_bootstrap(a, b, num_resamples=num_resamples, confidence=confidence, seed=seed)
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    binary = bool(np.all((a_arr == 0) | (a_arr == 1)) and np.all((b_arr == 0) | (b_arr == 1)))
    return Comparison(name=name, paired=paired, mcnemar=mcnemar(a_arr, b_arr) if binary else None,
                      verdict=verdict(paired, min_gain=min_gain, confidence=confidence))


def _p(value: float) -> str:
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def markdown_report(comparisons: Sequence[Comparison], *, title: str = "Promotion gate") -> str:
    """Short markdown section: one table row per comparison plus the overall gate outcome."""
    lines = [f"## {title}", "",
             "| comparison | n | accuracy a | accuracy b | diff | CI | p-value | McNemar p | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        v, r = c.verdict, c.paired
        ci = f"{100 * v.confidence:g}% [{v.ci_low:+.3f}, {v.ci_high:+.3f}]"
        mc = _p(c.mcnemar.p_value) if c.mcnemar is not None else "-"
        outcome = "PASS" if v.passed else "FAIL"
        lines.append(f"| {c.name} | {r.n} | {r.mean_a:.3f} | {r.mean_b:.3f} | {r.diff:+.3f} | {ci} "
                     f"| {_p(r.p_value)} | {mc} | {outcome} (min_gain {v.min_gain:+.3f}) |")
    overall = "PASSED" if comparisons and all(c.verdict.passed for c in comparisons) else "FAILED"
    lines += ["", f"Gate {overall}: a comparison passes iff the lower end of its bootstrap CI is above "
                  "min_gain (p-value: one-sided bootstrap, P(diff <= 0)).", ""]
    return "\n".join(lines)
