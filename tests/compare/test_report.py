"""The step-matched comparison's report (components/compare/report.py, sections.py, stats.py) from fabricated
unit folders: the paired comparisons with their minimum detectable effect (hand numbers), the signal table on
the signal each arm used (pipo/xi_used, pipo/xi for older units) with the blind arm as chance, the guard's
rollbacks and cost, runs that ended below their SFT start, and the cost per iteration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.compare.report import write_report
from components.compare.sections import guard_pairs
from components.compare.settings import load_compare
from components.compare.stats import minimum_detectable_effect, t_quantile
from components.config import load_config

PROBLEMS = 1000


def test_minimum_detectable_effect_is_the_paired_t_formula_at_80_percent_power():
    # diffs +0.01 -0.01 +0.02 0 -0.02: sd 0.0158114, n 5, t(4) 2.776 + 0.941 = 3.717: 3.717 * 0.0158114 / sqrt 5
    assert minimum_detectable_effect([0.01, -0.01, 0.02, 0.0, -0.02]) == pytest.approx(0.026283, abs=1e-6)
    # 10 seeds, sd 0.02: (2.262 + 0.883) * 0.02 / sqrt 10
    assert minimum_detectable_effect([0.02, -0.02] * 5) == pytest.approx(3.145 * 0.0210819 / 10**0.5, abs=1e-6)
    assert minimum_detectable_effect([0.01]) != minimum_detectable_effect([0.01])  # nan: one seed
    assert t_quantile(0.975, 40) == pytest.approx(2.021, abs=0.003) and t_quantile(0.80, 40) == pytest.approx(
        0.851, abs=0.003)


def _unit(out: Path, name: str, seed: int, p1: float, history=None, seconds=10.0, iterations=None):
    """A finished unit whose greedy pass@1 is p1 exactly: its first p1 * PROBLEMS problems correct."""
    folder = out / name
    folder.mkdir(parents=True)
    correct = np.arange(PROBLEMS) < round(p1 * PROBLEMS)
    pd.DataFrame({"greedy_correct": correct}).to_parquet(folder / "eval_chain_sum.parquet")
    result = {"seed": seed, "commit": "abc", "params": {}, "seconds": seconds, "wall_seconds": seconds + 2,
              "eval": {"chain_sum": {"pass@1": float(correct.mean()), "mean@4": float(correct.mean())}}}
    if iterations is not None:
        result["iterations"] = iterations
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "history.json").write_text(json.dumps(history or []))


def _probe_history(xi: list[float], key: str, extra=None) -> list[dict]:
    """A probe at iterations 0..3; xi_t logged from iteration 1 (under `key`); changes +0.1, -0.05 (clear)
    and -0.01 (within its SE 0.02)."""
    history = [{"pipo/probe_accuracy": 0.5}]
    for x, change in zip(xi, (0.1, -0.05, -0.01)):
        history.append({key: x, "pipo/probe_accuracy": 0.5 + change, "pipo/probe_change": change,
                        "pipo/probe_change_se": 0.02})
    return [{**h, **(extra or {})} for h in history]


@pytest.fixture()
def sweep(tmp_path):
    out = tmp_path / "out"
    c = load_compare(overrides=[
        "compare.seeds=[0, 1, 2]", f"compare.report={tmp_path / 'doc' / 'r.md'}", "compare.control=false",
        "compare.regimes={default: {overrides: [], variants: [grpo, pipo, pipo_blind, grpo_guard]}, "
        "high_lr: {overrides: [rl.lr=5.0e-4], variants: [grpo, grpo_guard], seeds: [0, 1]}}"])
    cfg = load_config(overrides=["verify.num_resamples=1000"])
    sft = {0: 0.45, 1: 0.55, 2: 0.60}
    grpo = {0: 0.500, 1: 0.600, 2: 0.700}
    pipo = {0: 0.510, 1: 0.590, 2: 0.720}
    blind = {0: 0.505, 1: 0.600, 2: 0.715}
    guard = {0: 0.500, 1: 0.600, 2: 0.695}
    rollbacks = {0: [0, 1, 1], 1: [0, 1, 2], 2: [0, 0, 0]}
    agree = [1.0, -2.0, 0.5]  # the sign of each clear change
    for s in (0, 1, 2):
        _unit(out, f"sft/s{s}", s, sft[s])
        _unit(out, f"runs/default/grpo/s{s}", s, grpo[s], [{"perf/iter_seconds": t} for t in (1.0, 2.0, 3.0)])
        # seed 2's PIPO run predates pipo/xi_used: its pipo/xi is the signal
        _unit(out, f"runs/default/pipo/s{s}", s, pipo[s],
              _probe_history(agree, "pipo/xi_used" if s < 2 else "pipo/xi", {"perf/iter_seconds": 3.0}))
        # the blind arm's measured xi agrees, the sign it used is the opposite: the table must read the used one
        blind_history = _probe_history([-x for x in agree], "pipo/xi_used")
        for h, x in zip(blind_history[1:], agree):
            h["pipo/xi"] = x
        _unit(out, f"runs/default/pipo_blind/s{s}", s, blind[s], blind_history, seconds=12.0, iterations=4)
        _unit(out, f"runs/default/grpo_guard/s{s}", s, guard[s],
              [{"guard/rollbacks": r, "perf/guard_seconds": 0.25 if i else 0.0} for i, r in enumerate(rollbacks[s])],
              seconds=10.5)
    for s, (g, gg) in {0: (0.40, 0.46), 1: (0.70, 0.56)}.items():
        _unit(out, f"runs/high_lr/grpo/s{s}", s, g)
        _unit(out, f"runs/high_lr/grpo_guard/s{s}", s, gg, [{"guard/rollbacks": 1.0}])
    return write_report(cfg, c, out).read_text()


def _row(text: str, start: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, rows)
    return rows[0]


def test_each_comparison_has_its_seed_interval_pooled_test_mde_and_what_no_difference_rules_out(sweep):
    assert "Units finished: 19 of 19 planned" in sweep and "still to run: none left" in sweep
    assert "MDE = (t_{0.025, n-1} + t_{0.2, n-1}) x sd_diff / sqrt(n)" in sweep
    # pipo - pipo_blind: +0.005 -0.010 +0.005; mean 0, sd 0.0086603, t(2) 4.303: +-0.0215;
    # MDE (4.303 + 1.061) * 0.0086603 / sqrt 3 = 0.0268; pooled: 10 discordant each way
    row = _row(sweep, "| default | pipo - pipo_blind |")
    assert "| is PIPO's feedback worth anything? | 3 | +0.005 -0.010 +0.005 | +0.000 [-0.022, +0.022] |" in row
    assert row.endswith("| 0.027 | no difference; rules out effects larger than ±0.022 |")
    # pipo_blind - grpo: +0.005 0 +0.015: mean 0.00667, sd 0.0076376; MDE 5.364 * 0.0076376 / sqrt 3 = 0.0237
    row = _row(sweep, "| default | pipo_blind - grpo |")
    assert "| +0.005 +0.000 +0.015 | +0.007 [-0.012, +0.026] |" in row and "| 0.024 |" in row
    assert "| helps (pooled only; seeds: no difference) |" in row  # 20 discordant pairs, all for the blind arm
    assert "| high_lr | grpo_guard - grpo | what does the guard cost or save GRPO? | 2 | +0.060 -0.140 |" in sweep
    assert "| default | pipo - grpo_2step |" not in sweep  # grpo_2step did not run: no row
    assert "![comparisons](r/comparisons.png)" in sweep and "![default_signal](r/default_signal.png)" in sweep


def test_the_signal_table_reads_the_signal_used_falls_back_to_xi_and_shows_the_blind_arm_as_chance(sweep):
    signal = sweep.split("## Does the signal")[1].split("## The guard")[0]
    # 3 seeds x 3 intervals, 2 clear per seed; seed 2 read through pipo/xi
    assert "| 1.000 (6) |" in _row(signal, "| default | pipo | xi, xi_used | 9 |")
    assert "| 0.000 (6) |" in _row(signal, "| default | pipo_blind (chance level) | xi_used | 9 |")
    assert "| default | grpo |" not in signal


def test_the_guard_section_counts_rollbacks_runs_below_their_sft_start_and_the_guards_cost(sweep):
    guard = sweep.split("## The guard")[1].split("## Cost")[0]
    assert "| default | grpo_guard | 0 of 3 | 1 2 0 |" in guard
    assert "| high_lr | grpo | 1 of 2 | - |" in guard  # seed 0: 0.40 below its SFT start 0.45
    assert "| high_lr | grpo_guard | 0 of 2 | 1 1 |" in guard
    # default: guarded - unguarded 0 0 -0.005: mean -0.00167 [-0.0088, +0.0055]: a 0.005 cost not ruled out;
    # the guard's 0.5 s of its run's 10.5 s RL; RL seconds 10.5 vs 10
    assert "| grpo_guard - grpo | 3 | -0.002 [-0.009, +0.006] | not shown | 4.8% | +5.0% | met |" in guard


def test_the_cost_table_gives_median_seconds_per_iteration_or_seconds_over_iterations(sweep):
    cost = sweep.split("## Cost")[1]
    assert "| default | grpo | 3 | 2.000 | 1.00x | 10 |" in cost
    assert "| default | pipo | 3 | 3.000 | 1.50x | 10 |" in cost
    assert "| default | pipo_blind | 3 | 3.000 | 1.50x | 12 |" in cost  # no perf/iter_seconds: 12 s / 4


def test_guard_pairs_match_arms_that_differ_only_in_rl_guard_settings():
    c = load_compare(overrides=[
        "compare.variants={grpo: [rl.pipo.enabled=false, rl.guard.enabled=false], "
        "pipo: [rl.pipo.enabled=true, rl.guard.enabled=false], "
        "grpo_guard: [rl.pipo.enabled=false, rl.guard.enabled=true, rl.guard.drop_se=3.0], "
        "grpo_guard_v1: [rl.pipo.enabled=false, rl.guard.enabled=true, rl.guard.output=best]}",
        "compare.comparisons=[]", "compare.regimes={default: {overrides: [], variants: [grpo]}}"])
    assert guard_pairs(c) == [("grpo_guard", "grpo"), ("grpo_guard_v1", "grpo")]
