"""The comparison report, from the sweep's finished units only (a partial sweep gives a partial report that
says what is missing): the configured paired comparisons with their minimum detectable effects
(components/compare/sections.py, statistics in components/compare/stats.py); the signal's agreement with
the probe, the blind arm as chance; the guard's rollbacks and cost; costs; and per regime, eval accuracy of
every variant over seeds against GRPO, with figures.

Written to compare.report (committed: docs/results/pipo-controls.md, figures in the folder of the same
stem) and to compare.out_dir/summary.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from pathlib import Path

import pandas as pd

from components.compare.sections import (comparison_rows, comparisons_table, cost_table, guard_section,
                                         signal_points, signal_table)
from components.compare.settings import CompareConfig, portable_command
from components.compare.stats import overall_verdict, paired_against, seed_interval, verdict  # noqa: F401
from components.compare.sweep import rl_name
from components.config import Config
from components.infra.atomic_io import atomic_write_text, claim_dir

BASELINE = "grpo"


def _mean_std(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.3f}" if xs else "n/a"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def record_invocation(out_dir: Path, command: list[str]) -> None:
    """Append this sweep command (and when it started) to out_dir/invocations.json, for the report, with
    the machine's paths made portable (portable_command): the committed report names no one's folders."""
    import shlex
    import time

    path = out_dir / "invocations.json"
    claim_dir(out_dir)
    seen = json.loads(path.read_text()) if path.exists() else []
    seen.append({"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": shlex.join(portable_command(command))})
    atomic_write_text(path, json.dumps(seen, indent=1))


def other_runs(out_dir: Path, configured: set[str], bench: str) -> list[str]:
    """Finished runs in out_dir of regimes the config does not list (an lr search, say): pass@1 per seed."""
    lines = []
    for regime_dir in sorted(p for p in (out_dir / "runs").glob("*") if p.is_dir() and p.name not in configured):
        for variant_dir in sorted(p for p in regime_dir.glob("*") if p.is_dir()):
            runs = [u for s in sorted(variant_dir.glob("s*")) if (u := load_unit(s))]
            if runs:
                lr = runs[0]["params"].get("rl.lr")
                lines.append(f"| {regime_dir.name} | {variant_dir.name} | {lr} | "
                             + " ".join(f"s{u['seed']}: {u['eval'][bench]['pass@1']:.3f}" for u in runs) + " |")
    if not lines:
        return []
    return ["## Other runs in the sweep folder", "",
            "Finished runs of regimes this config does not list (e.g. the search for the high-lr regime's lr); "
            "greedy pass@1 per seed.", "", "| regime | variant | rl.lr | pass@1 per seed |", "|---|---|---|---|",
            *lines, ""]


def load_unit(folder: Path) -> dict | None:
    """A finished unit's result, its per-problem eval tables and (RL) history; None if not finished."""
    path = folder / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    result["tables"] = {p.stem.removeprefix("eval_"): pd.read_parquet(p) for p in folder.glob("eval_*.parquet")}
    history = folder / "history.json"
    result["history"] = json.loads(history.read_text()) if history.exists() else []
    return result


def _median_metric(units: list[dict], key: str) -> float:
    values = [h[key] for u in units for h in u["history"] if key in h and h[key] == h[key]]
    return statistics.median(values) if values else math.nan


def regime_section(cfg: Config, c: CompareConfig, regime: str, units: dict[str, list[dict]], sft: list[dict],
                   bench: str, figures: list[str]) -> tuple[list[str], list[dict]]:
    """Markdown lines of one regime, and its verdict rows (for the overview)."""
    k = cfg.eval.num_samples
    expected = len(c.regime_seeds(regime))
    lines = [f"## {regime}", "", f"Overrides: `{' '.join(c.regimes[regime].overrides) or '(none)'}`.", "",
             f"| model | seeds | pass@1 (mean ± std) | per seed | mean@{k} | vs {BASELINE}: diff [95 % CI] | McNemar p "
             "| verdict | s/iter | PI step s | paired re-sample s | probe s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    rows = [("sft", sft)] + list(units.items())
    for name, runs in rows:
        if not runs:
            lines.append(f"| {name} | 0/{expected} | not run yet | | | | | | | | | |")
            continue
        p1 = [u["eval"][bench]["pass@1"] for u in runs]
        mk = [u["eval"][bench].get(f"mean@{k}", math.nan) for u in runs]
        per_seed = " ".join(f"{x:.3f}" for x in p1)
        test, vd, mc = "-", "-", "-"
        if name not in ("sft", BASELINE) and units.get(BASELINE):
            paired = paired_against(units[BASELINE], runs, bench, cfg)
            if paired is not None:
                c, seeds = paired
                diffs = [next(u for u in runs if u["seed"] == s)["eval"][bench]["pass@1"]
                         - next(u for u in units[BASELINE] if u["seed"] == s)["eval"][bench]["pass@1"] for s in seeds]
                seed_ci = seed_interval(diffs)
                vd = overall_verdict((c.verdict.ci_low, c.verdict.ci_high), seed_ci)
                test = f"{c.paired.diff:+.3f} [{c.verdict.ci_low:+.3f}, {c.verdict.ci_high:+.3f}] (n={c.paired.n})"
                mc = f"{c.mcnemar.p_value:.3g}" if c.mcnemar is not None else "-"
                verdicts.append({"regime": regime, "variant": name, "seeds": len(seeds), "diff": c.paired.diff,
                                 "ci_low": c.verdict.ci_low, "ci_high": c.verdict.ci_high, "verdict": vd,
                                 "seed_ci": seed_ci, "per_seed_diff": diffs})
        iter_s = _median_metric(runs, "perf/iter_seconds")
        pi_s = _median_metric(runs, "perf/pi_seconds")
        paired_s = _median_metric([{"history": [h for h in u["history"] if h.get("perf/paired_seconds", 0) > 0]}
                                   for u in runs], "perf/paired_seconds")
        probe_s = _median_metric([{"history": [h for h in u["history"] if h.get("perf/probe_seconds", 0) > 0]}
                                  for u in runs], "perf/probe_seconds")
        fmt = lambda x: "-" if x != x else f"{x:.3f}"  # noqa: E731
        lines.append(f"| {name} | {len(runs)}/{expected} | {_mean_std(p1)} | {per_seed} | {_mean_std(mk)} | {test} "
                     f"| {mc} | {vd} | {fmt(iter_s)} | {fmt(pi_s)} | {fmt(paired_s)} | {fmt(probe_s)} |")
    lines += ["", "Per-seed pass@1 minus GRPO's (same seed, same SFT start): "
              + "; ".join(f"{v['variant']}: " + " ".join(f"{d:+.3f}" for d in v["per_seed_diff"]) for v in verdicts)
              if verdicts else "", ""]
    lines += ["Times are medians over iterations (s/iter: the whole iteration; the others: their part of it, over the "
              "iterations where they ran), one thread per run with another run beside it.", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return lines, verdicts


def load_sweep(c: CompareConfig, out_dir: Path) -> tuple[dict[int, dict], dict[str, dict[str, list[dict]]]]:
    """(seed -> finished SFT start, regime -> variant -> finished runs over the regime's seeds)."""
    sft = {s: u for s in c.all_seeds() if (u := load_unit(out_dir / f"sft/s{s}"))}
    by_regime: dict[str, dict[str, list[dict]]] = {}
    for regime, rc in c.regimes.items():
        seeds = c.regime_seeds(regime)
        by_regime[regime] = {v: [u for s in seeds if (u := load_unit(out_dir / rl_name(regime, v, s)))]
                             for v in rc.variants}
        if c.control and regime == c.control_regime:
            by_regime[regime]["continued_sft"] = [u for s in seeds
                                                  if (u := load_unit(out_dir / rl_name(regime, "continued_sft", s)))]
    return sft, by_regime


# Before the step-matched sweep ran: docs/results/pipo-vs-grpo.md's median s/iter per arm (grpo 0.65, pipo
# 0.95 by default; 0.63 / 0.79 at high lr; 0.90 / 1.36 with the noisy verifier; a second step or the blind
# sign priced as PIPO's PI step, the guard at +5 %) x 150 iterations, times that sweep's 1.21 ratio of
# measured process time (3.27 h) to its iterations' time (probes, eval, SFT): 15.8 ks x 1.21.
PLANNED_ESTIMATE = ("about 5.3 h of process time for the 120 RL runs and 10 SFT starts, so about 2.7 h wall at "
                    "two runs at once on the previous sweep's 2-core machine (from docs/results/pipo-vs-grpo.md's "
                    "per-iteration times)")


def remaining_estimate(units_done: list[dict], remaining: int, jobs: int) -> str:
    """Wall time left: the unfinished units at the finished ones' median process seconds, `jobs` at once."""
    if not remaining:
        return "none left"
    if not units_done:
        return f"{remaining} units, no finished unit to time them by yet"
    median = statistics.median(u.get("wall_seconds", u.get("seconds", 0.0)) for u in units_done)
    return f"{remaining} units, about {remaining * median / jobs / 3600:.1f} h wall at the finished units' median"


def write_report(cfg: Config, c: CompareConfig, out_dir: Path) -> Path:
    from components.compare.plots import comparison_plot, regime_figures

    report = Path(c.report)
    fig_dir = report.with_suffix("")
    claim_dir(fig_dir)
    bench = cfg.eval.benchmarks[0].name
    sft, by_regime = load_sweep(c, out_dir)
    units_all = list(sft.values()) + [u for r in by_regime.values() for runs in r.values() for u in runs]
    planned = len(c.all_seeds()) + sum(len(c.regime_seeds(n)) * len(r.variants) for n, r in c.regimes.items()) \
        + (len(c.regime_seeds(c.control_regime)) if c.control else 0)
    commits = sorted({u["commit"] for u in units_all})
    wall = sum(u.get("wall_seconds", 0.0) for u in units_all)
    seeds = "; ".join(f"{n}: {len(c.regime_seeds(n))} x {len(r.variants)}" for n, r in c.regimes.items())
    lines = ["# Is it PIPO's feedback or one more step? Step-matched controls and the verified-improvement guard", "",
             "Written by `make compare` (components/compare/report.py) from the finished runs; rerun it to continue an "
             "interrupted sweep and refresh this page.", "",
             f"- Units finished: {len(units_all)} of {planned} planned (an SFT start per seed, then per regime "
             f"seeds x variants: {seeds}"
             f"{'; the matched-time control' if c.control else '; no continued-SFT control (compare.control false)'}).",
             f"- Eval: `{bench}` ({cfg.eval.num_samples} samples for mean@k), greedy pass@1; the paired test pools "
             f"(seed, problem) units and runs a {cfg.verify.num_resamples}-resample bootstrap; the seed-level interval "
             "is a 95 % t-interval of the per-seed differences (the seeds' spread counts). Verdict at 95 %: helps "
             "(both intervals above 0), hurts (both below 0), no difference (neither); otherwise it says which one.",
             f"- RL iterations per run: {c.iterations} (a regime may set its own); every run: `{' '.join(c.overrides)}`.",
             f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; one torch thread per "
             f"run, {c.jobs} runs at once. Process time of the finished units: {wall / 3600:.2f} h.",
             f"- Wall time: estimated before the run at {PLANNED_ESTIMATE}; still to run: "
             f"{remaining_estimate(units_all, planned - len(units_all), c.jobs)}.",
             f"- Code (each unit records the commit it ran; `-dirty`: uncommitted changes): {', '.join(commits) or 'n/a'}.",
             ""]
    invocations = out_dir / "invocations.json"
    if invocations.exists():
        lines += ["Sweep commands (each continues the previous one's finished units):", ""]
        lines += [f"- {i['started']}: `{i['command']}`" for i in json.loads(invocations.read_text())] + [""]
    sections = []
    for regime, units in by_regime.items():
        regime_sft = [sft[s] for s in c.regime_seeds(regime) if s in sft]
        points = {}  # variant -> (S, D) over every probe interval of its runs
        for v, runs in units.items():
            per_run = [signal_points(u) for u in runs]
            points[v] = ([x for p in per_run for x in p[0]], [y for p in per_run for y in p[1]])
        figs = regime_figures(regime, regime_sft, units, bench, fig_dir, points)
        body, _ = regime_section(cfg, c, regime, units, regime_sft, bench, [f"{fig_dir.name}/{p.name}" for p in figs])
        sections += body
    rows = comparison_rows(cfg, c, by_regime, bench)
    lines += comparisons_table(rows)
    if (fig := comparison_plot(rows, fig_dir / "comparisons.png")) is not None:
        lines += [f"![comparisons]({fig_dir.name}/{fig.name})", ""]
    lines += signal_table(by_regime) + guard_section(c, by_regime, sft, bench) + cost_table(by_regime)
    lines += sections + other_runs(out_dir, set(c.regimes), bench)
    text = "\n".join(lines) + "\n"
    atomic_write_text(report, text)
    claim_dir(out_dir)
    atomic_write_text(out_dir / "summary.md", text.replace(f"]({fig_dir.name}/", f"]({fig_dir.resolve()}/"))
    return report
