"""The comparison report's statistics: paired differences over seeds and over (seed, problem), verdicts, and
the smallest effect a paired seed design can be expected to detect.

Seeds are the experimental unit (each seed: its own SFT start and random streams, shared by every variant),
so every difference here is paired by seed: variant b's pass@1 minus variant a's on the same seed.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from components.gate.statistics import compare, t95_interval

# Student-t quantiles by degrees of freedom (1..30): two-sided alpha 0.05 (t_{0.975}) and power 0.8 (t_{0.80}).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_T80 = (1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868, 0.866,
        0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854)
_Z = {0.975: 1.959964, 0.80: 0.841621}


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile at p (0.975 or 0.80) for df degrees of freedom: the table to 30, beyond it the
    normal quantile with the first Cornish-Fisher term z + (z^3 + z) / (4 df) (within 0.003 there)."""
    table = {0.975: _T975, 0.80: _T80}[p]
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(table):
        return table[df - 1]
    z = _Z[p]
    return z + (z**3 + z) / (4 * df)


def minimum_detectable_effect(diffs: list[float]) -> float:
    """The smallest true mean difference a paired test over these seeds detects with 80 % power at two-sided
    alpha 0.05, with the seeds' observed spread:

        MDE = (t_{alpha/2, n-1} + t_{0.2, n-1}) * sd_diff / sqrt(n)

    (t_{q, df}: the upper-q Student-t quantile; sd_diff: the sample standard deviation of the n per-seed
    differences). nan below two seeds."""
    n = len(diffs)
    if n < 2:
        return math.nan
    return (t_quantile(0.975, n - 1) + t_quantile(0.80, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)


def verdict(ci_low: float, ci_high: float) -> str:
    if ci_low > 0:
        return "helps"
    if ci_high < 0:
        return "hurts"
    return "no difference"


def seed_interval(diffs: list[float]) -> tuple[float, float]:
    """95 % Student-t interval of the mean per-seed difference (seeds as the unit: their spread counts)."""
    return t95_interval(diffs)


def overall_verdict(pooled: tuple[float, float], seeds: tuple[float, float]) -> str:
    """helps / hurts only when both the pooled test and the seed-level interval say so; a pooled verdict the
    seeds' spread does not confirm is reported as such."""
    a, b = verdict(*pooled), verdict(*seeds) if seeds[0] == seeds[0] else "no difference"
    if a == b:
        return a
    return f"{a} (pooled only; seeds: {b})" if a != "no difference" else f"{b} (seeds only)"


def ruled_out(seeds: tuple[float, float]) -> float:
    """The size of effect a seed-level 95 % interval rules out: anything beyond its farther end from 0."""
    return max(abs(seeds[0]), abs(seeds[1]))


def pass1(units: list[dict], seed: int, bench: str) -> float:
    return next(u for u in units if u["seed"] == seed)["eval"][bench]["pass@1"]


def seed_diffs(reference: list[dict], treatment: list[dict], bench: str) -> tuple[list[int], list[float]]:
    """(the seeds both finished, treatment's pass@1 minus reference's on each)."""
    seeds = sorted({u["seed"] for u in reference} & {u["seed"] for u in treatment})
    return seeds, [pass1(treatment, s, bench) - pass1(reference, s, bench) for s in seeds]


def paired_against(base: list[dict], other: list[dict], bench: str, cfg):
    """Paired bootstrap + McNemar of greedy correctness, pooled over (seed, problem), on the seeds both have."""
    seeds = sorted({u["seed"] for u in base} & {u["seed"] for u in other})
    if not seeds:
        return None
    pick = lambda units: np.concatenate([  # noqa: E731
        next(u for u in units if u["seed"] == s)["tables"][bench]["greedy_correct"].astype(float).to_numpy()
        for s in seeds])
    return compare("b vs a", pick(base), pick(other), min_gain=0.0, confidence=cfg.verify.confidence,
                   num_resamples=cfg.verify.num_resamples, seed=0), seeds
