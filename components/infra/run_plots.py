"""Figures of ONE stage run, logged as PNG artifacts beside its metrics (the UI's charts stay the main
view; a PNG is what a report, a review or a run's artifact page shows without the chart builder).
Pure plotting: numbers in, matplotlib figures out (components/compare/plots.py draws the multi-seed
comparison figures of `make compare`)."""

from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (fewer at the start), same length as `values`."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def _curve(xs: list[int], ys: list[float], ylabel: str, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    values = np.asarray(ys, dtype=float)
    ax.plot(xs, values, color="C0", alpha=0.35, lw=0.8, label="per iteration")
    window = max(1, len(values) // 20)
    if window > 1:
        ax.plot(xs, _moving_average(values, window), color="C0", lw=1.8, label=f"moving mean ({window})")
        ax.legend()
    ax.set_xlabel("RL iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def rl_curves(history: list[dict[str, float]], first_iteration: int = 0) -> dict[str, Figure]:
    """{artifact file: figure} for an RL run's per-iteration metrics (history[i] is iteration
    first_iteration + i; a resumed run holds only the iterations it ran): the mean reward, PIPO's
    improvement signal xi_t (when PIPO ran) and the held-out probe accuracy (when the probe ran)."""
    figures: dict[str, Figure] = {}
    series = {
        "reward/mean": ("plots/rl_reward.png", "mean reward", "Training reward per iteration"),
        "pipo/xi": ("plots/rl_xi.png", "xi_t = (mu_t - mu_his) / sigma_his",
                    "PIPO improvement signal (absent while the window fills)"),
        "pipo/probe_accuracy": ("plots/rl_probe_accuracy.png", "probe accuracy (greedy)",
                                "Held-out probe accuracy during RL"),
    }
    for key, (name, ylabel, title) in series.items():
        points = [(first_iteration + i, h[key]) for i, h in enumerate(history) if key in h]
        if not points:
            continue
        xs, ys = zip(*points)
        figures[name] = _curve(list(xs), list(ys), ylabel, title)
        if key == "pipo/xi":
            figures[name].axes[0].axhline(0, color="black", lw=0.6)
    return figures


def eval_bars(results: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: list[str]) -> Figure:
    """Grouped bars: one panel per metric (e.g. pass@1, mean@4), benchmarks on the x axis, one bar
    per model. results: {model: {benchmark: {metric: value}}} (the evaluate stage's metrics file)."""
    models = list(results)
    benches = list(dict.fromkeys(b for per in results.values() for b in per))
    panel_width = max(4.0, 1.0 + 0.6 * len(benches) * len(models))
    fig, axes = plt.subplots(1, len(metrics), figsize=(panel_width * len(metrics), 4), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            values = [results[model].get(b, {}).get(metric, np.nan) for b in benches]
            xs = np.arange(len(benches)) + (i - (len(models) - 1) / 2) * width
            bars = ax.bar(xs, values, width, color=f"C{i}", label=model)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(benches)), benches, rotation=15)
        ax.set_ylim(0, 1.05)
        ax.set_title(metric)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig
