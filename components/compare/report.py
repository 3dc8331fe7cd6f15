"""The comparison report, from the sweep's finished units only (a partial sweep gives a partial report that
says what is missing): per regime, eval accuracy of every variant over seeds with a paired test against
GRPO and a verdict at 95 %; PIPO's signal agreement with the probe; costs; figures.

Written to compare.report (committed: docs/results/pipo-vs-grpo.md, figures in the folder of the same
stem) and to compare.out_dir/summary.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from components.compare.settings import CompareConfig, portable_command
from components.compare.sweep import rl_name
from components.config import Config
from components.gate.statistics import compare, t95_interval
from components.infra.atomic_io import atomic_write_text, claim_dir
from components.rl.probe import signal_agreement

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


def _num(x: float, spec: str) -> str:
    return "n/a" if x != x else format(x, spec)


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


def paired_against(base: list[dict], other: list[dict], bench: str, cfg: Config):
    """Paired bootstrap + McNemar of greedy correctness, pooled over (seed, problem), on the seeds both have."""
    seeds = sorted({u["seed"] for u in base} & {u["seed"] for u in other})
    if not seeds:
        return None
    pick = lambda units: np.concatenate([  # noqa: E731
        next(u for u in units if u["seed"] == s)["tables"][bench]["greedy_correct"].astype(float).to_numpy()
        for s in seeds])
    return compare("b vs a", pick(base), pick(other), min_gain=0.0, confidence=cfg.verify.confidence,
                   num_resamples=cfg.verify.num_resamples, seed=0), seeds


def agreement_points(units: list[dict]) -> tuple[list[float], list[float], list[float]]:
    """(signal, true change, its SE) at every probe interval of every seed's run."""
    s, d, se = [], [], []
    for u in units:
        for h in u["history"]:
            if "pipo/probe_signal" in h:
                s.append(h["pipo/probe_signal"])
                d.append(h["pipo/probe_change"])
                se.append(h["pipo/probe_change_se"])
    return s, d, se


def _median_metric(units: list[dict], key: str) -> float:
    values = [h[key] for u in units for h in u["history"] if key in h and h[key] == h[key]]
    return statistics.median(values) if values else math.nan


def regime_section(cfg: Config, c: CompareConfig, regime: str, units: dict[str, list[dict]], sft: list[dict],
                   bench: str, figures: list[str]) -> tuple[list[str], list[dict]]:
    """Markdown lines of one regime, and its verdict rows (for the overview)."""
    k = cfg.eval.num_samples
    expected = len(c.seeds)
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


def agreement_table(cfg: Config, by_regime: dict[str, dict[str, list[dict]]]) -> list[str]:
    lines = ["## Does PIPO's signal track the real change?", "",
             "Every run scores a fixed probe set of held-out RL prompts (greedy, clean verifier) every "
             "`rl.pipo.probe.every` iterations. For each interval between probes: the true change D (probe accuracy "
             "difference, with its paired standard error) and the signal S (the mean xi of the iterations that judged "
             "the updates of that interval). Pooled over seeds: the correlation of S and D, and how often sign(S) = "
             "sign(D) where |D| exceeds its standard error (n such intervals). Chance is 0 and 0.5.", "",
             "| regime | variant | signal | intervals | corr(S, D) | sign agreement (n) | per-seed corr |",
             "|---|---|---|---|---|---|---|"]
    for regime, units in by_regime.items():
        for variant, runs in units.items():
            s, d, se = agreement_points(runs)
            if not s:
                continue
            a = signal_agreement(s, d, se)
            per_seed = [signal_agreement(*agreement_points([u]))["signal_corr"] for u in runs]
            signal = runs[0]["params"].get("rl.pipo.signal", "window")
            lines.append(f"| {regime} | {variant} | {signal} | {int(a['intervals'])} | {_num(a['signal_corr'], '+.3f')} | "
                         f"{_num(a['sign_agree'], '.3f')} ({int(a['sign_agree_n'])}) | "
                         + " ".join(_num(c, "+.2f") for c in per_seed) + " |")
    return lines + [""]


def write_report(cfg: Config, c: CompareConfig, out_dir: Path) -> Path:
    from components.compare.plots import regime_figures

    report = Path(c.report)
    fig_dir = report.with_suffix("")
    claim_dir(fig_dir)
    bench = cfg.eval.benchmarks[0].name
    sft = [u for s in c.seeds if (u := load_unit(out_dir / f"sft/s{s}"))]
    by_regime: dict[str, dict[str, list[dict]]] = {}
    for regime, rc in c.regimes.items():
        by_regime[regime] = {v: [u for s in c.seeds if (u := load_unit(out_dir / rl_name(regime, v, s)))]
                             for v in rc.variants}
        if c.control and regime == c.control_regime:
            by_regime[regime]["continued_sft"] = [u for s in c.seeds
                                                  if (u := load_unit(out_dir / rl_name(regime, "continued_sft", s)))]
    units_all = sft + [u for r in by_regime.values() for runs in r.values() for u in runs]
    planned = len(c.seeds) * (1 + sum(len(r.variants) for r in c.regimes.values()) + (1 if c.control else 0))
    commits = sorted({u["commit"] for u in units_all})
    wall = sum(u.get("wall_seconds", 0.0) for u in units_all)
    lines = ["# Where does PIPO pay? GRPO vs GRPO+PIPO across regimes", "",
             "Written by `make compare` (components/compare/report.py) from the finished runs; rerun it to continue an "
             "interrupted sweep and refresh this page.", "",
             f"- Units finished: {len(units_all)} of {planned} planned "
             f"({len(c.seeds)} seeds; SFT per seed, every regime's variants"
             f"{', the matched-time control' if c.control else '; no control this time (compare.control false)'}).",
             f"- Eval: `{bench}` ({cfg.eval.num_samples} samples for mean@k), greedy pass@1; the paired test pools "
             f"(seed, problem) units and runs a {cfg.verify.num_resamples}-resample bootstrap; the seed-level interval "
             "is a 95 % t-interval of the per-seed differences (the seeds' spread counts). Verdict at 95 %: helps "
             "(both intervals above 0), hurts (both below 0), no difference (neither); otherwise it says which one.",
             f"- RL iterations per run: {c.iterations} (a regime may set its own); every run: `{' '.join(c.overrides)}`.",
             f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; one torch thread per "
             f"run, {c.jobs} runs at once. Process time of the finished units: {wall / 3600:.2f} h.",
             f"- Code (each unit records the commit it ran; `-dirty`: uncommitted changes): {', '.join(commits) or 'n/a'}.",
             ""]
    invocations = out_dir / "invocations.json"
    if invocations.exists():
        lines += ["Sweep commands (each continues the previous one's finished units):", ""]
        lines += [f"- {i['started']}: `{i['command']}`" for i in json.loads(invocations.read_text())] + [""]
    sections, verdicts = [], []
    for regime, units in by_regime.items():
        figs = regime_figures(regime, sft, units, bench, fig_dir)
        body, v = regime_section(cfg, c, regime, units, sft, bench, [f"{fig_dir.name}/{p.name}" for p in figs])
        sections += body
        verdicts += v
    lines += ["## Verdicts", "", "| regime | variant | seeds | pass@1 diff vs GRPO, pooled [95 % CI] | per-seed diffs "
              "| seed-level [95 % CI] | verdict |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {v['regime']} | {v['variant']} | {v['seeds']} | {v['diff']:+.3f} [{v['ci_low']:+.3f}, "
              f"{v['ci_high']:+.3f}] | {' '.join(f'{d:+.3f}' for d in v['per_seed_diff'])} | "
              f"[{_num(v['seed_ci'][0], '+.3f')}, {_num(v['seed_ci'][1], '+.3f')}] | {v['verdict']} |"
              for v in verdicts if v["variant"] != "continued_sft"]
    lines += [""] + agreement_table(cfg, by_regime) + sections + other_runs(out_dir, set(c.regimes), bench)
    text = "\n".join(lines) + "\n"
    atomic_write_text(report, text)
    claim_dir(out_dir)
    atomic_write_text(out_dir / "summary.md", text.replace(f"]({fig_dir.name}/", f"]({fig_dir.resolve()}/"))
    return report
