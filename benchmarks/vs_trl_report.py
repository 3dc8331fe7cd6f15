"""Markdown tables of a benchmarks/vs_trl.py report (the same numbers as its JSON)."""

from __future__ import annotations

import math
from typing import Any

LABELS = {"project_grpo": "project GRPO", "project_pipo": "project GRPO+PIPO", "trl_grpo": "TRL 1.16 GRPO",
          "project_grpo_before": "project GRPO, before (--baseline)",
          "project_pipo_before": "project GRPO+PIPO, before (--baseline)"}


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def speed_table(report: dict[str, Any]) -> list[str]:
    sp, cont = report["speed"], report.get("contention")
    head = "| side | s/iter (median) | IQR | generate | loss fwd | backward | other | vs TRL |"
    rows = [head + (" loaded s/iter | slowdown |" if cont else ""),
            "|---" * (8 + (2 if cont else 0)) + "|"]
    trl = sp["trl_grpo"]["s_per_iter"]["median"]
    for side, label in LABELS.items():
        if side not in sp:
            continue
        s, parts = sp[side]["s_per_iter"], sp[side]["parts_median_s"]
        row = (f"| {label} | {_f(s['median'])} | {_f(s['p25'])}-{_f(s['p75'])} | {_f(parts['generate'])} | "
               f"{_f(parts['loss_forward'])} | {_f(parts['backward'])} | {_f(sp[side]['other_median_s'])} | "
               f"{_f(s['median'] / trl, 2)}x |")
        if cont:
            row += f" {_f(cont['loaded'][side]['s_per_iter']['median'])} | {_f(cont['slowdown'][side], 2)}x |"
        rows.append(row)
    if "pipo_active_s_per_iter" in sp["project_pipo"]:
        rows.append(f"\nGRPO+PIPO over the iterations where PIPO was active only: "
                    f"{_f(sp['project_pipo']['pipo_active_s_per_iter']['median'])} s/iter")
    if cont:
        rows.append(f"\nratio of slowdowns project/TRL: {_f(cont['ratio_of_slowdowns'], 2)} "
                    f"(GRPO+PIPO/TRL {_f(cont['ratio_of_slowdowns_pipo'], 2)})")
    return rows


def accuracy_table(acc: dict[str, Any]) -> list[str]:
    fractions = ("0.25", "0.5", "1.0")
    cols = [(side, f) for side in ("project_grpo", "project_pipo") for f in fractions] + [("trl_grpo", "1.0")]
    budget = acc["budget_s"]
    head = "| seed | SFT | " + " | ".join(f"{LABELS[s]} @{float(f) * budget:.0f}s" for s, f in cols) + " |"
    rows = [f"pass@1 (greedy) after training for a wall budget of {budget:.0f} s", "", head,
            "|---" * (len(cols) + 2) + "|"]
    for seed in map(str, acc["seeds"]):
        cells = [_f(acc["per_seed"][s][seed].get(f, {}).get("pass@1")) for s, f in cols]
        rows.append(f"| {seed} | {_f(acc['sft_pass@1'])} | " + " | ".join(cells) + " |")
    rows.append("| mean | " + _f(acc["sft_pass@1"]) + " | "
                + " | ".join(_f(acc["mean_pass@1"][s].get(f)) for s, f in cols) + " |")
    t = acc["project_time_to_trl_accuracy_s"]
    rows.append(f"\n{LABELS[acc['project_side']]} reaches TRL's mean pass@1 at the full budget "
                + ("never within the budget" if t is None else f"after {t:.0f} s ({t / budget:.2f} of the budget)"))
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [f"## project vs TRL ({report['machine']['cpu_model'] or report['machine']['processor']}, "
             f"{report['settings']['threads']} torch threads per run)", ""]
    if "speed" in report:
        lines += speed_table(report) + [""]
    if "accuracy" in report:
        lines += accuracy_table(report["accuracy"]) + [""]
    return "\n".join(lines)
