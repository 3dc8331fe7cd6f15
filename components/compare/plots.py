"""PNG figures for the comparison report: eval accuracy with intervals, reward curves, PIPO's xi
trace and policy entropy, per variant over seeds. Pure plotting: data in, files out."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components.gate.statistics import t95_interval  # noqa: E402

Histories = dict[str, dict[int, list[dict[str, float]]]]  # variant -> seed -> per-iteration metrics


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _series(runs: dict[int, list[dict[str, float]]], key: str) -> np.ndarray | None:
    """[seeds, iterations] of one metric (NaN where a run lacks it), or None if no run has it."""
    rows = [[h.get(key, np.nan) for h in hist] for hist in runs.values() if any(key in h for h in hist)]
    if not rows:
        return None
    width = min(len(r) for r in rows)
    return np.array([r[:width] for r in rows], dtype=float)


def accuracy_plot(rows: list[dict], metric: str, path: Path) -> Path:
    """Bars: mean over seeds of `metric` per model kind, with a 95 % t-interval; dots: each seed."""
    kinds = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(kinds) + 2, 4))
    for i, kind in enumerate(kinds):
        values = [r[metric] for r in rows if r["model"] == kind]
        mean = statistics.mean(values)
        low, high = t95_interval(values)
        half = (high - low) / 2 if len(values) > 1 else 0.0
        ax.bar(i, mean, color=f"C{i}", alpha=0.6)
        ax.errorbar(i, mean, yerr=half, color="black", capsize=6)
        ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(kinds)), kinds, rotation=15)
    ax.set_ylim(0, 1)
    return _save(fig, ax, path, None, metric, f"Eval {metric}: mean over seeds, 95 % interval, seeds as dots",
                 legend=False)


def curve_plot(histories: Histories, key: str, ylabel: str, title: str, path: Path, smooth: int = 10,
               xlabel: str = "RL iteration") -> Path | None:
    """Mean over seeds of a per-iteration metric per variant (smoothed), with the seeds' range."""
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for i, (variant, runs) in enumerate(histories.items()):
        series = _series(runs, key)
        if series is None:
            continue
        curves = np.array([_smooth(s, smooth) for s in series])
        x = np.arange(curves.shape[1]) + (min(smooth, series.shape[1]) - 1 if series.shape[1] >= smooth else 0)
        ax.plot(x, np.nanmean(curves, axis=0), color=f"C{i}", label=f"{variant} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(x, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), color=f"C{i}", alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    return _save(fig, ax, path, xlabel, ylabel, title)


def xi_plot(histories: Histories, path: Path) -> Path | None:
    """PIPO's normalised improvement signal xi_t per seed (0 before the window fills)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for i, (variant, runs) in enumerate(histories.items()):
        for j, (seed, hist) in enumerate(runs.items()):
            xs = [t for t, h in enumerate(hist) if "pipo/xi" in h]
            if not xs:
                continue
            ax.plot(xs, [hist[t]["pipo/xi"] for t in xs], color=f"C{i}", alpha=0.5, lw=0.8,
                    label=variant if j == 0 else None)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0, color="black", lw=0.6)
    return _save(fig, ax, path, "RL iteration", "xi_t = (mu_t - mu_his) / sigma_his", "PIPO improvement signal per iteration (one line per seed)")


def scatter_plot(points: dict[str, tuple[list[float], list[float]]], path: Path, title: str) -> Path | None:
    """Signal S vs true change D per probe interval, one colour per variant."""
    if not any(s for s, _ in points.values()):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (variant, (s, d)) in enumerate(points.items()):
        if s:
            ax.scatter(s, d, s=10, alpha=0.6, color=f"C{i}", label=f"{variant} ({len(s)})")
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(0, color="black", lw=0.6)
    return _save(fig, ax, path, "signal: mean xi used over the interval", "true change: probe accuracy difference", title)


def comparison_plot(rows: list[dict], path: Path) -> Path | None:
    """Every comparison's mean per-seed difference with its seed-level 95 % interval, seeds as dots, and the
    minimum detectable effect as a grey band around 0 (rows: components/compare/sections.py's comparison_rows)."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    for i, r in enumerate(rows):
        low, high = r["seed_ci"]
        if low == low:
            ax.plot([low, high], [i, i], color="black", lw=1.5)
        ax.scatter(r["diffs"], [i] * len(r["diffs"]), color="C0", s=10, alpha=0.6, zorder=3)
        ax.scatter([r["mean"]], [i], color="C3", marker="D", s=24, zorder=4)
        if r["mde"] == r["mde"]:
            ax.fill_betweenx([i - 0.35, i + 0.35], -r["mde"], r["mde"], color="grey", alpha=0.2)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(rows)), [f"{r['regime']}: {r['treatment']} - {r['reference']}" for r in rows])
    ax.invert_yaxis()
    return _save(fig, ax, path, "final pass@1 difference (per seed: dots; mean and 95 % interval)", "",
                 "Paired differences; grey: +-MDE at 80 % power", legend=False)


def regime_figures(regime: str, sft: list[dict], units: dict[str, list[dict]], bench: str, out_dir: Path,
                   points: dict[str, tuple[list[float], list[float]]]) -> list[Path]:
    """One regime's figures (units: variant -> finished runs, each with eval, seed, history; points: variant
    -> the signal S and probe change D of every probe interval, components/compare/sections.py)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"model": "sft", "pass@1": u["eval"][bench]["pass@1"]} for u in sft]
    rows += [{"model": v, "pass@1": u["eval"][bench]["pass@1"]} for v, runs in units.items() for u in runs]
    histories: Histories = {v: {u["seed"]: u["history"] for u in runs} for v, runs in units.items()
                            if runs and runs[0]["history"]}
    made = [accuracy_plot(rows, "pass@1", out_dir / f"{regime}_eval_accuracy.png") if rows else None,
            curve_plot(histories, "reward/mean", "mean reward", f"{regime}: training reward (smoothed)",
                       out_dir / f"{regime}_reward.png"),
            curve_plot({v: {s: [h for h in hist if "pipo/probe_accuracy" in h] for s, hist in runs.items()}
                        for v, runs in histories.items()}, "pipo/probe_accuracy", "probe accuracy (greedy)",
                       f"{regime}: held-out probe accuracy", out_dir / f"{regime}_probe.png", smooth=1,
                       xlabel="probe (one every rl.pipo.probe.every iterations)"),
            xi_plot({v: runs for v, runs in histories.items()}, out_dir / f"{regime}_xi.png")]
    made.append(scatter_plot(points, out_dir / f"{regime}_signal.png", f"{regime}: the signal used vs the probe's change"))
    return [p for p in made if p is not None]


def _save(fig, ax, path: Path, xlabel: str | None, ylabel: str, title: str, legend: bool = True) -> Path:
    """Label, write the PNG and close the figure (every plot here ends this way)."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
