"""The RL run's per-iteration curves kept for plots: saved in each checkpoint, so a resumed run's plots
(MLflow images, DVC's `reports/rl/curves.csv`) cover every iteration, not only those it ran itself."""

from __future__ import annotations

import csv
import math
from pathlib import Path

# metric key -> CSV column (DVC's plot fields: no '/')
CURVE_KEYS = {"reward/mean": "reward_mean", "reward/std": "reward_std", "pipo/xi": "pipo_xi",
              "pipo/probe_accuracy": "probe_accuracy"}


def curve_point(iteration: int, metrics: dict[str, float]) -> dict[str, float]:
    """The curve's values at one iteration (0-based): those of CURVE_KEYS the iteration logged."""
    return {"iteration": iteration, **{k: float(metrics[k]) for k in CURVE_KEYS if k in metrics}}


def write_curves_csv(curve: list[dict[str, float]], path: str | Path) -> Path:
    """One row per iteration (1-based, as the progress lines count), a column per curve; empty where an
    iteration did not log it (PIPO's xi while its window fills)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["iteration", *CURVE_KEYS.values()])
        for point in curve:
            writer.writerow([int(point["iteration"]) + 1, *(_cell(point.get(k)) for k in CURVE_KEYS)])
    return path


def _cell(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"
