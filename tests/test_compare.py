"""The comparison report: summary table, figures, paired tests, and a tiny `make compare` run
(its matched-time control, components/sft/control.py: tests/test_sft_control.py)."""

import pandas as pd
import pytest

from components.compare.run import summarize
from components.config import load_config


def test_summary_table_reports_mean_std_and_gain_over_sft():
    rows = [
        {"seed": 0, "model": "sft", "pass@1": 0.40, "mean@4": 0.30, "seconds": 10.0},
        {"seed": 1, "model": "sft", "pass@1": 0.50, "mean@4": 0.40, "seconds": 12.0},
        {"seed": 0, "model": "grpo", "pass@1": 0.60, "mean@4": 0.50, "seconds": 20.0},
        {"seed": 1, "model": "grpo", "pass@1": 0.80, "mean@4": 0.70, "seconds": 22.0},
    ]
    table = summarize(rows, k=4)
    # grpo pass@1: mean 0.7, sample std 0.1414; gains 0.2 and 0.3 -> 0.25 ± 0.0707
    assert "| grpo | 0.700 ± 0.141 | 0.600 ± 0.141 | 0.250 ± 0.071 | 21.000 ± 1.414 |" in table
    assert "| sft | 0.450 ± 0.071 |" in table


def test_figures_and_paired_tests_from_synthetic_runs(tmp_path):
    import numpy as np

    from components.compare.run import paired_tests
    from components.compare.plots import compare_figures

    rng = np.random.default_rng(0)
    rows, histories, tables = [], {}, {}
    for seed in (0, 1, 2):
        for kind, acc in (("sft", 0.5), ("grpo", 0.7), ("grpo_pipo", 0.72)):
            correct = rng.random(200) < acc
            rows.append({"seed": seed, "model": kind, "pass@1": float(correct.mean())})
            tables[(kind, seed, "b")] = pd.DataFrame({"greedy_correct": correct})
            if kind != "sft":
                histories.setdefault(kind, {})[seed] = [
                    {"reward/mean": 0.5 + t / 100, "actor/entropy": 1.0 - t / 100,
                     **({"pipo/xi": float(np.sin(t))} if kind == "grpo_pipo" and t >= 8 else {})}
                    for t in range(40)]
    files = compare_figures(rows, histories, tmp_path)
    assert [f.name for f in files] == ["eval_accuracy.png", "reward_curves.png", "pipo_xi.png", "entropy.png"]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000
    cfg = load_config(overrides=["verify.num_resamples=1000"])
    report = paired_tests(tables, ["grpo", "grpo_pipo"], cfg)
    assert "| grpo vs sft | 600 |" in report and "| grpo_pipo vs sft | 600 |" in report
    assert "| grpo_pipo vs grpo | 600 |" in report


@pytest.mark.slow
def test_compare_runs_end_to_end_on_a_tiny_setup(tmp_path, monkeypatch):
    """The command users rerun (`make compare`), shrunk: one seed, two RL variants, no control."""
    import json

    from components.compare.run import run_compare
    from components.data.prepare import prepare
    from components.model.tokenizer import build_char_tokenizer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    overrides = ["data.num_sft=64", "data.num_rl=64", "data.num_eval=24", f"data.out_dir={tmp_path / 'data'}",
                 "model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64",
                 "sft.epochs=1", "rl.iterations=3", "rl.prompts_per_iteration=4", "rl.num_generations=4",
                 "rl.pipo.window=2", "eval.num_samples=2", "verify.num_resamples=500"]
    cfg = load_config(overrides=overrides)
    tok = build_char_tokenizer()
    prepare(cfg, lambda text: len(tok(text)["input_ids"]), 30, tmp_path / "validation")
    variants = {"grpo": overrides + ["rl.pipo.enabled=false"], "grpo_pipo": overrides + ["rl.pipo.enabled=true"]}
    rows = run_compare(cfg, None, [0], variants, False, tmp_path / "report")
    assert {r["model"] for r in rows} == {"sft", "grpo", "grpo_pipo"}
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "grpo_pipo vs grpo" in summary and "![eval_accuracy](eval_accuracy.png)" in summary
    assert (tmp_path / "report" / "pipo_xi.png").exists()
    assert len(json.loads((tmp_path / "report" / "histories.json").read_text())["grpo_pipo"]["0"]) == 3
