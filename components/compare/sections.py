"""The comparison report's cross-variant sections, from finished units (dicts of components/compare/report.py's
load_unit): the paired comparisons with their minimum detectable effects, the signal table, the guard's
record and the costs. Each returns markdown lines; Units = regime -> variant -> finished runs.
"""

from __future__ import annotations

import math
import statistics

from components.compare.settings import CompareConfig
from components.compare.stats import (minimum_detectable_effect, overall_verdict, paired_against, ruled_out,
                                      seed_diffs, seed_interval)
from components.rl.probe import signal_agreement

Units = dict[str, dict[str, list[dict]]]
GUARD_ON = "rl.guard.enabled=true"
GUARD_TARGET_PASS1 = 0.005  # the guard may cost at most this much pass@1 in the default regime (issue 24)
GUARD_TARGET_TIME = 0.10  # and at most this share of RL time


def _num(x: float, spec: str) -> str:
    return "n/a" if x != x else format(x, spec)


def comparison_rows(cfg, c: CompareConfig, by_regime: Units, bench: str) -> list[dict]:
    """Every configured comparison in every regime that runs both variants, where some seed finished both."""
    rows = []
    for regime, units in by_regime.items():
        for comp in c.comparisons:
            ref, treat = units.get(comp.reference), units.get(comp.treatment)
            if not ref or not treat:
                continue
            seeds, diffs = seed_diffs(ref, treat, bench)
            if not seeds:
                continue
            pooled, _ = paired_against(ref, treat, bench, cfg)
            seed_ci = seed_interval(diffs)
            vd = overall_verdict((pooled.verdict.ci_low, pooled.verdict.ci_high), seed_ci)
            if vd == "no difference" and seed_ci[0] == seed_ci[0]:
                vd += f"; rules out effects larger than ±{ruled_out(seed_ci):.3f}"
            rows.append({"regime": regime, "treatment": comp.treatment, "reference": comp.reference,
                         "question": comp.question, "seeds": seeds, "diffs": diffs,
                         "mean": statistics.mean(diffs), "seed_ci": seed_ci, "pooled": pooled,
                         "mde": minimum_detectable_effect(diffs), "verdict": vd})
    return rows


def comparisons_table(rows: list[dict]) -> list[str]:
    lines = ["## Comparisons", "",
             "Each row: treatment's final greedy pass@1 minus reference's, paired by seed (same SFT start, same "
             "streams). Seed-level: the mean of the per-seed differences with its 95 % Student-t interval (the seeds' "
             "spread counts). Pooled: the paired bootstrap over (seed, problem) and McNemar's test. The verdict needs "
             "both to agree (otherwise it says which one); \"no difference\" names the effects the seed-level interval "
             "rules out. MDE: the smallest true difference this many seeds detect with 80 % power at two-sided "
             "alpha 0.05, MDE = (t_{0.025, n-1} + t_{0.2, n-1}) x sd_diff / sqrt(n), with sd_diff the standard "
             "deviation of the per-seed differences.", "",
             "| regime | treatment - reference | question | seeds | per-seed diffs | seed-level mean [95 % CI] "
             "| pooled [95 % CI] | McNemar p | MDE (80 %) | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["pooled"]
        mc = f"{p.mcnemar.p_value:.3g}" if p.mcnemar is not None else "-"
        lines.append(f"| {r['regime']} | {r['treatment']} - {r['reference']} | {r['question']} | {len(r['seeds'])} | "
                     + " ".join(f"{d:+.3f}" for d in r["diffs"])
                     + f" | {r['mean']:+.3f} [{_num(r['seed_ci'][0], '+.3f')}, {_num(r['seed_ci'][1], '+.3f')}] | "
                     f"{p.paired.diff:+.3f} [{p.verdict.ci_low:+.3f}, {p.verdict.ci_high:+.3f}] | {mc} | "
                     f"{_num(r['mde'], '.3f')} | {r['verdict']} |")
    if not rows:
        lines.append("| (no comparison has a seed with both runs finished yet) | | | | | | | | | |")
    return lines + [""]


def signal_key(unit: dict) -> str:
    """The signal the PI step used: pipo/xi_used (pipo_blind: the random-signed xi), or, for units written
    before that metric existed, pipo/xi (equal to it whenever the sign is not drawn)."""
    return "pipo/xi_used" if any("pipo/xi_used" in h for h in unit["history"]) else "pipo/xi"


def signal_points(unit: dict) -> tuple[list[float], list[float], list[float]]:
    """(S, D, SE of D) per probe interval of one run, from its history: D and its SE as the probe logged them,
    S the mean signal of the iterations after the previous probe up to and including this probe's (xi_t
    judges the update made at t-1, and the probe at t scores the policy before iteration t's own update:
    the same intervals as components/rl/probe.py's ProbeTracker)."""
    key = signal_key(unit)
    s, d, se, pending = [], [], [], []
    for h in unit["history"]:
        if key in h and h[key] == h[key]:
            pending.append(h[key])
        if "pipo/probe_accuracy" in h:
            if "pipo/probe_change" in h and pending:
                s.append(sum(pending) / len(pending))
                d.append(h["pipo/probe_change"])
                se.append(h["pipo/probe_change_se"])
            pending = []
    return s, d, se


def signal_table(by_regime: Units, blind: str = "pipo_blind") -> list[str]:
    lines = ["## Does the signal track the real change?", "",
             "Every run scores a fixed probe set of held-out RL prompts (greedy, clean verifier) every "
             "`rl.pipo.probe.every` iterations. For each interval between probes: the true change D (probe accuracy "
             "difference, with its paired standard error) and the signal S: the mean of the xi the PI step used "
             "(`pipo/xi_used`; `pipo/xi` for units written before that metric) over the iterations that judged the "
             "interval's updates. Pooled over seeds: corr(S, D), and how often sign(S) = sign(D) where |D| exceeds "
             f"its standard error (n such intervals). The `{blind}` arm uses a random sign: its row is the chance "
             "level of the same runs' noise (in expectation 0 and 0.5).", "",
             "| regime | arm | signal | intervals | corr(S, D) | sign agreement (n) | per-seed corr |",
             "|---|---|---|---|---|---|---|"]
    for regime, units in by_regime.items():
        for variant, runs in units.items():
            points = [signal_points(u) for u in runs]
            s, d, se = ([x for p in points for x in p[i]] for i in range(3))
            if not s:
                continue
            a = signal_agreement(s, d, se)
            per_seed = [signal_agreement(*p)["signal_corr"] for p in points]
            keys = sorted({signal_key(u).removeprefix("pipo/") for u in runs})
            label = f"{variant} (chance level)" if variant == blind else variant
            lines.append(f"| {regime} | {label} | {', '.join(keys)} | {int(a['intervals'])} | "
                         f"{_num(a['signal_corr'], '+.3f')} | {_num(a['sign_agree'], '.3f')} ({int(a['sign_agree_n'])}) | "
                         + " ".join(_num(x, "+.2f") for x in per_seed) + " |")
    return lines + [""]


def final_metric(unit: dict, key: str) -> float:
    """The last value a run logged for `key` (nan if it never did)."""
    values = [h[key] for h in unit["history"] if key in h]
    return float(values[-1]) if values else math.nan


def _without_guard(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.split("=", 1)[0].strip().startswith("rl.guard.")]


def guard_pairs(c: CompareConfig) -> list[tuple[str, str]]:
    """(guarded arm, the same arm unguarded): a variant with rl.guard.enabled=true and one without it whose
    other overrides are the same (rl.guard.* settings aside)."""
    pairs = []
    for name, overrides in c.variants.items():
        if GUARD_ON in overrides:
            rest = _without_guard(overrides)
            pairs += [(name, other) for other, o in c.variants.items()
                      if GUARD_ON not in o and _without_guard(o) == rest]
    return pairs


def below_start(runs: list[dict], sft: dict[int, dict], bench: str) -> tuple[int, int]:
    """(runs whose final pass@1 is below their seed's SFT start, runs with that start finished)."""
    paired = [u for u in runs if u["seed"] in sft]
    return (sum(u["eval"][bench]["pass@1"] < sft[u["seed"]]["eval"][bench]["pass@1"] for u in paired),
            len(paired))


def guard_section(c: CompareConfig, by_regime: Units, sft: dict[int, dict], bench: str) -> list[str]:
    """Rollbacks per run, runs ending below their SFT start per arm, and the guard's cost against its targets."""
    lines = ["## The guard: rollbacks, runs that ended below their SFT start, and its cost", "",
             "Rollbacks: each guarded run's final `guard/rollbacks`. Below SFT: runs whose final greedy pass@1 is "
             "below their own seed's SFT start (target with the guard: none).", "",
             "| regime | arm | below SFT start | rollbacks per run (by seed) |", "|---|---|---|---|"]
    guarded = {g for g, _ in guard_pairs(c)}
    for regime, units in by_regime.items():
        for variant, runs in units.items():
            if not runs or variant == "continued_sft":
                continue
            k, n = below_start(runs, sft, bench)
            rb = " ".join(_num(final_metric(u, "guard/rollbacks"), ".0f") for u in runs) if variant in guarded else "-"
            lines.append(f"| {regime} | {variant} | {k} of {n} | {rb} |")
    regime = next(iter(by_regime), None)
    lines += ["", f"Cost of the guard in the `{regime}` regime (targets: pass@1 cost <= {GUARD_TARGET_PASS1} by the "
              f"seed-level interval, time <= {GUARD_TARGET_TIME:.0%} of RL time). Time: the guard's own seconds "
              "(`perf/guard_seconds`) as a share of the run's RL seconds, and the guarded arm's median RL seconds "
              "against the unguarded arm's.", "",
              "| guarded - unguarded | seeds | pass@1 diff [95 % CI] | pass@1 target | guard seconds share "
              "| RL seconds vs unguarded | time target |", "|---|---|---|---|---|---|---|"]
    for g, ref in guard_pairs(c):
        units = by_regime.get(regime, {})
        if not units.get(g) or not units.get(ref):
            continue
        seeds, diffs = seed_diffs(units[ref], units[g], bench)
        low, high = seed_interval(diffs)
        met = "n/a (<2 seeds)" if low != low else ("met" if low >= -GUARD_TARGET_PASS1 else "not shown")
        share = statistics.median(sum(h.get("perf/guard_seconds", 0.0) for h in u["history"]) / u["seconds"]
                                  for u in units[g])
        ratio = statistics.median(u["seconds"] for u in units[g]) / statistics.median(
            u["seconds"] for u in units[ref]) - 1
        lines.append(f"| {g} - {ref} | {len(seeds)} | {statistics.mean(diffs):+.3f} [{_num(low, '+.3f')}, "
                     f"{_num(high, '+.3f')}] | {met} | {share:.1%} | {ratio:+.1%} | "
                     f"{'met' if share <= GUARD_TARGET_TIME else 'not met'} |")
    return lines + [""]


def seconds_per_iteration(unit: dict) -> float:
    """Median perf/iter_seconds of a run; for a run without it, its RL seconds over its iterations."""
    values = [h["perf/iter_seconds"] for h in unit["history"]
              if "perf/iter_seconds" in h and h["perf/iter_seconds"] == h["perf/iter_seconds"]]
    if values:
        return statistics.median(values)
    return unit["seconds"] / unit["iterations"] if unit.get("iterations") else math.nan


def cost_table(by_regime: Units, baseline: str = "grpo") -> list[str]:
    lines = ["## Cost", "",
             f"Per arm: the median over runs of each run's median seconds per iteration (`perf/iter_seconds`; for a "
             f"run without it, RL seconds / iterations), its ratio to `{baseline}`'s, and the median RL seconds per "
             "run. One torch thread per run, compare.jobs runs at once.", "",
             f"| regime | arm | runs | s/iteration | vs {baseline} | RL s per run |", "|---|---|---|---|---|---|"]
    for regime, units in by_regime.items():
        per_iter = {v: statistics.median(seconds_per_iteration(u) for u in runs)
                    for v, runs in units.items() if runs and v != "continued_sft"}
        for v, s in per_iter.items():
            ratio = s / per_iter[baseline] if baseline in per_iter else math.nan
            lines.append(f"| {regime} | {v} | {len(units[v])} | {s:.3f} | {_num(ratio, '.2f')}x | "
                         f"{statistics.median(u['seconds'] for u in units[v]):.0f} |")
    return lines + [""]
