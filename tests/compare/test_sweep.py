"""`make compare`: the sweep's plan, its resumption, the report's verdicts and agreement tables, and a tiny
sweep end to end (its matched-time control, components/sft/control.py: tests/sft/test_control.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.compare.report import verdict, write_report
from components.compare.settings import load_compare, split_overrides
from components.compare.sweep import plan_units, run_sweep
from components.config import load_config
from tests.support.mlflow_store import empty_store

SMALL = ["compare.seeds=[0,1]", "compare.iterations=7", "compare.control=true", "compare.control_regime=a",
         "compare.regimes={a: {overrides: [rl.lr=1.0e-3], variants: [grpo, pipo]}, b: {overrides: [], variants: [pipo]}}"]


def test_plan_interleaves_seeds_across_regimes_and_waits_for_each_seeds_sft():
    units = plan_units(load_compare(overrides=SMALL), None, [])
    names = [u.spec.name for u in units]
    assert names == ["sft/s0", "sft/s1", "runs/a/grpo/s0", "runs/a/pipo/s0", "runs/b/pipo/s0", "runs/a/grpo/s1",
                     "runs/a/pipo/s1", "runs/b/pipo/s1", "runs/a/continued_sft/s0", "runs/a/continued_sft/s1"]
    rl = next(u for u in units if u.spec.name == "runs/a/pipo/s1")
    assert rl.needs == ["sft/s1"] and rl.spec.sft_dir == "sft/s1/model"
    # compare.iterations, then the variant's overrides, then the regime's (the regime wins)
    assert rl.spec.overrides.index("rl.iterations=7") < rl.spec.overrides.index("rl.pipo.enabled=true") \
        < rl.spec.overrides.index("rl.lr=1.0e-3")
    control = [u for u in units if u.spec.kind == "control"]
    assert [u.spec.budget_from for u in control] == [["runs/a/grpo/s0", "runs/a/pipo/s0"],
                                                     ["runs/a/grpo/s1", "runs/a/pipo/s1"]]


def test_a_regime_with_seeds_of_its_own_runs_those_and_every_seed_gets_one_sft_start():
    c = load_compare(overrides=["compare.seeds=[0, 1, 2]", "compare.control=true", "compare.control_regime=few",
                                "compare.regimes={all: {overrides: [], variants: [grpo]}, "
                                "few: {overrides: [], variants: [pipo], seeds: [1, 7]}}"])
    assert c.regime_seeds("all") == [0, 1, 2] and c.regime_seeds("few") == [1, 7] and c.all_seeds() == [0, 1, 2, 7]
    names = [u.spec.name for u in plan_units(c, None, [])]
    assert names == ["sft/s0", "sft/s1", "sft/s2", "sft/s7", "runs/all/grpo/s0", "runs/all/grpo/s1",
                     "runs/few/pipo/s1", "runs/all/grpo/s2", "runs/few/pipo/s7", "runs/few/continued_sft/s1",
                     "runs/few/continued_sft/s7"]


def test_the_committed_sweep_plans_170_rl_runs_and_an_sft_start_per_seed():
    """compare.yaml: default 10 seeds x 10 variants, high_lr 5 x 10, noisy_verifier 5 x 4; no control. Every
    RL run pins rl.guard.enabled, so a change of params.yaml's default redefines no arm."""
    units = plan_units(load_compare(), None, [])
    kinds = [u.spec.kind for u in units]
    assert kinds.count("rl") == 100 + 50 + 20 and kinds.count("sft") == 10 and "control" not in kinds
    for u in units:
        if u.spec.kind == "rl":
            assert sum(o.startswith("rl.guard.enabled=") for o in u.spec.overrides) == 1, u.spec.name


def test_a_regime_may_not_change_the_shared_sft_start():
    c = load_compare(overrides=["compare.regimes={x: {overrides: [sft.lr=1.0], variants: [grpo]}}",
                                "compare.control=false"])
    with pytest.raises(ValueError, match="regimes.x: override 'sft.lr=1.0' must set an rl."):
        plan_units(c, None, [])


@pytest.mark.parametrize("override, message", [
    ("compare.regimes={x: {overrides: [], variants: [nope]}}", r"compare.*unknown \['nope'\]"),
    ("compare.control_regime=nope", r"compare.control_regime 'nope' is not a regime"),
    ("compare.seeds=[0, -1]", r"compare\.seeds\.1"),
    ("compare.seeds=[0, true]", r"compare\.seeds: .*not bool"),
    ("compare.jobs=0", r"compare\.jobs"),
    ("compare.seeds=[0, 1, 0]", r"compare\.seeds: seed\(s\) \[0\] listed twice"),
    ("compare.regimes.high_lr.seeds=[2, 2]", r"compare\.regimes\.high_lr\.seeds: seed\(s\) \[2\] listed twice"),
    ("compare.regimes.high_lr.seeds=[]", r"compare\.regimes\.high_lr\.seeds"),
    ("compare.regimes.high_lr.seeds=[-1]", r"compare\.regimes\.high_lr\.seeds\.0"),
    ("compare.comparisons=[{treatment: pipo, reference: nope, question: q}]",
     r"compare\.comparisons\.0: unknown variant\(s\) \['nope'\]"),
])
def test_bad_compare_settings_are_errors_naming_the_key_and_compare_yaml(override, message):
    from components.config import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        load_compare(overrides=[override, "compare.control=false"] if "control_regime" not in override
                     else [override, "compare.control=true"])
    assert "compare.yaml" in str(err.value)


def test_compare_settings_live_in_compare_yaml_not_in_the_pipeline_config():
    from components.config import ConfigError

    assert "compare" not in load_config().model_dump()
    with pytest.raises(ConfigError, match="compare"):
        load_config(overrides=["compare.seeds=[0]"])
    runs, harness = split_overrides(["rl.lr=0.1", "compare.seeds=[0]", "compare_x.y=1"])
    assert runs == ["rl.lr=0.1", "compare_x.y=1"] and harness == ["compare.seeds=[0]"]


# Variants whose overrides load on any branch (the real compare.yaml's rl.pipo.blind / joint and rl.guard
# keys come from the RL side of the step-matched experiment).
CLI_VARIANTS = ["--set", "compare.variants={grpo: [rl.pipo.enabled=false], pipo: [rl.pipo.enabled=true]}",
                "--set", "compare.comparisons=[{treatment: pipo, reference: grpo, question: q}]",
                "--set", "compare.regimes={a: {overrides: [], variants: [grpo, pipo]}, "
                "b: {overrides: [rl.lr=1.0e-3], variants: [pipo], seeds: [3, 4]}}"]


def test_the_compare_cli_plans_units_with_presets_and_sets_for_the_runs(tmp_path, capsys):
    """`make compare`'s start-up without the sweep (--plan): --set goes to compare.yaml or to the runs, a
    --preset reaches every unit's config; a regime with seeds of its own runs those."""
    from components.compare.run import main

    preset = tmp_path / "p.yaml"
    preset.write_text("rl:\n  update_threads: 1\n")
    assert main(["--plan", "--preset", str(preset), *CLI_VARIANTS, "--set", "compare.seeds=[3]",
                 "--set", "compare.control=false", "--set", "rl.lr=0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("sft/s3\tsft\trl.lr=0.5")
    assert [line.split("\t")[0] for line in lines] == [
        "sft/s3", "sft/s4", "runs/a/grpo/s3", "runs/a/pipo/s3", "runs/b/pipo/s3", "runs/b/pipo/s4"]
    assert all("rl.lr=0.5" in line for line in lines)
    assert main(["--plan", "--set", "compare.control_regime=nope", "--set", "compare.control=true"]) == 2
    assert "compare.control_regime 'nope'" in capsys.readouterr().err


def test_the_plan_loads_every_runs_config_so_a_misspelt_override_stops_it_before_the_sweep(capsys):
    from components.compare.run import main

    assert main(["--plan", *CLI_VARIANTS, "--set", "compare.variants.pipo=[rl.pipo.enabld=true]"]) == 2
    err = capsys.readouterr().err
    assert "unit runs/a/pipo/s0" in err and "rl.pipo.enabld" in err


def test_units_load_the_sweeps_presets(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("rl:\n  lr: 0.25\n")
    units = plan_units(load_compare(overrides=SMALL), None, [], [str(preset)])
    assert {tuple(u.spec.presets) for u in units} == {(str(preset),)}


def _fake_unit(python_file: Path, body: str) -> str:
    python_file.write_text(body)
    return str(python_file)


def test_sweep_skips_finished_units_and_redoes_an_interrupted_one(tmp_path, monkeypatch):
    """Units are real processes; a fake `components.compare.units` records which ran. One is finished
    already, one left a .partial folder (interrupted): only the unfinished ones run, needs first."""
    from components.compare.sweep import Planned
    from components.compare.units import UnitSpec

    out = tmp_path / "out"
    (out / "sft/s0").mkdir(parents=True)
    (out / "sft/s0/result.json").write_text("{}")
    (out / "runs/r/v/s0.partial").mkdir(parents=True)
    fake = tmp_path / "fake" / "components" / "compare"
    fake.mkdir(parents=True)
    for d in (fake.parent, fake):
        (d / "__init__.py").write_text("")
    (fake / "units.py").write_text(
        "import json, sys, time\nfrom pathlib import Path\n"
        "spec = json.loads(Path(sys.argv[1]).read_text())\nout = Path(sys.argv[2])\n"
        "with open(out / 'ran.txt', 'a') as f: f.write(spec['name'] + '\\n')\n"
        "if spec['name'] == 'runs/r/bad/s0': sys.exit(3)\n"
        "(out / spec['name']).mkdir(parents=True, exist_ok=True)\n"
        "(out / spec['name'] / 'result.json').write_text('{}')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    monkeypatch.chdir(tmp_path / "fake")
    units = [Planned(UnitSpec("sft", "sft/s0", 0)), Planned(UnitSpec("sft", "sft/s1", 1)),
             Planned(UnitSpec("rl", "runs/r/v/s0", 0, sft_dir="sft/s0/model"), needs=["sft/s0"]),
             Planned(UnitSpec("rl", "runs/r/v/s1", 1, sft_dir="sft/s1/model"), needs=["sft/s1"]),
             Planned(UnitSpec("rl", "runs/r/bad/s0", 0), needs=["sft/s0"]),
             Planned(UnitSpec("control", "runs/r/c/s0", 0, budget_from=["runs/r/bad/s0"]), needs=["runs/r/bad/s0"])]
    done = []
    failed = run_sweep(units, out, jobs=2, on_done=done.append)
    ran = (out / "ran.txt").read_text().split()
    assert sorted(ran) == ["runs/r/bad/s0", "runs/r/v/s0", "runs/r/v/s1", "sft/s1"]
    assert ran.index("sft/s1") < ran.index("runs/r/v/s1")
    assert sorted(failed) == ["runs/r/bad/s0", "runs/r/c/s0"]  # the control needed the failed run
    assert sorted(done) == ["runs/r/v/s0", "runs/r/v/s1", "sft/s0", "sft/s1"]
    (out / "ran.txt").unlink()
    assert run_sweep(units[:4], out, jobs=2) == [] and not (out / "ran.txt").exists()  # nothing left to do


def test_verdict_reads_the_interval():
    assert verdict(0.01, 0.05) == "helps" and verdict(-0.05, -0.01) == "hurts" and verdict(-0.01, 0.02) == "no difference"


def test_a_pooled_verdict_the_seeds_do_not_confirm_is_said_to_be_pooled_only():
    from components.compare.report import overall_verdict, seed_interval

    low, high = seed_interval([-0.02, -0.03, -0.01])  # mean -0.02, sd 0.01, t(2) 4.303: +-0.0248
    assert (low, high) == (pytest.approx(-0.0448, abs=1e-4), pytest.approx(0.0048, abs=1e-4))
    assert overall_verdict((-0.04, -0.01), (low, high)) == "hurts (pooled only; seeds: no difference)"
    assert overall_verdict((-0.04, -0.01), (-0.05, -0.01)) == "hurts"
    assert overall_verdict((-0.01, 0.01), (0.001, 0.02)) == "helps (seeds only)"
    assert overall_verdict((-0.01, 0.01), (float("nan"), float("nan"))) == "no difference"


def _unit(out: Path, name: str, seed: int, correct: np.ndarray, history=None, params=None):
    folder = out / name
    folder.mkdir(parents=True)
    pd.DataFrame({"greedy_correct": correct}).to_parquet(folder / "eval_chain_sum.parquet")
    (folder / "result.json").write_text(json.dumps({
        "seed": seed, "commit": "abc", "params": params or {}, "seconds": 10.0, "wall_seconds": 12.0,
        "eval": {"chain_sum": {"pass@1": float(correct.mean()), "mean@4": float(correct.mean())}}}))
    if history is not None:
        (folder / "history.json").write_text(json.dumps(history))


def test_report_gives_verdicts_per_regime_and_the_signal_agreement(tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    c = load_compare(overrides=SMALL + ["compare.control=false", f"compare.report={tmp_path / 'doc' / 'report.md'}"])
    cfg = load_config(overrides=["verify.num_resamples=1000"])
    for seed in (0, 1):
        _unit(out, f"sft/s{seed}", seed, rng.random(300) < 0.5)
        grpo = rng.random(300) < 0.6
        _unit(out, f"runs/a/grpo/s{seed}", seed, grpo, history=[{"perf/iter_seconds": 1.0}] * 3)
        better = grpo | (rng.random(300) < 0.3)  # PIPO right where GRPO was, and more
        # signal agrees in sign with each clear change; one change within its noise
        history = [{"perf/iter_seconds": 1.5, "pipo/probe_accuracy": 0.5},
                   {"pipo/xi": 1.0, "pipo/probe_accuracy": 0.6, "pipo/probe_change": 0.1, "pipo/probe_change_se": 0.02},
                   {"pipo/xi": -2.0, "pipo/probe_accuracy": 0.55, "pipo/probe_change": -0.05,
                    "pipo/probe_change_se": 0.02},
                   {"pipo/xi": 0.5, "pipo/probe_accuracy": 0.54, "pipo/probe_change": -0.01,
                    "pipo/probe_change_se": 0.02}]
        _unit(out, f"runs/a/pipo/s{seed}", seed, better, history=history, params={"rl.pipo.signal": "window"})
    report = write_report(cfg, c, out)
    text = report.read_text()
    assert "| a | pipo | 2 |" in text and ("| helps |" in text or "| helps (pooled only" in text)
    assert "| pipo | 0/2 | not run yet |" in text  # regime b has not run: said, not hidden
    # pooled: 6 intervals, 4 clear ones, all agreeing in sign
    assert "| a | pipo | xi | 6 |" in text and "| 1.000 (4) |" in text
    assert "Units finished: 6 of 8 planned" in text
    figures = sorted(p.name for p in (tmp_path / "doc" / "report").iterdir())
    assert "a_eval_accuracy.png" in figures and "a_signal.png" in figures
    assert (out / "summary.md").exists()


@pytest.mark.slow
def test_compare_runs_end_to_end_on_a_tiny_setup(tmp_path, monkeypatch):
    """The command users rerun (`make compare`), shrunk: one seed, two regimes, a guarded arm; then rerun after
    removing one finished run: only that run is redone, and the report and MLflow have every unit."""
    import mlflow

    from components.compare.run import main
    from components.data.prepare import prepare
    from components.model.tokenizer import build_char_tokenizer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path / 'mlflow.db'))
    overrides = ["data.num_sft=64", "data.num_rl=200", "data.num_eval=24", f"data.out_dir={tmp_path / 'data'}",
                 "model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64",
                 "sft.epochs=1", "rl.prompts_per_iteration=4", "rl.num_generations=4", "rl.pipo.window=2",
                 "eval.num_samples=2", "verify.num_resamples=500", "rl.pipo.probe.size=16",
                 "compare.seeds=[0]", "compare.iterations=6",
                 "compare.overrides=[rl.pipo.probe.every=2, rl.guard.every=2]", "compare.control=true",
                 "compare.regimes={default: {overrides: [], variants: [grpo, pipo, grpo_guard]}, "
                 "noisy: {overrides: [rl.verifier_noise.flip_share=0.1], variants: [pipo]}}",
                 f"compare.out_dir={tmp_path / 'out'}", f"compare.report={tmp_path / 'doc' / 'r.md'}"]
    cfg = load_config(overrides=split_overrides(overrides)[0])
    tok = build_char_tokenizer()
    prepare(cfg, lambda text: len(tok(text)["input_ids"]), 30, tmp_path / "validation")
    args = [a for o in overrides for a in ("--set", o)]
    assert main(args) == 0
    out = tmp_path / "out"
    names = ["sft/s0", "runs/default/grpo/s0", "runs/default/pipo/s0", "runs/default/grpo_guard/s0",
             "runs/noisy/pipo/s0", "runs/default/continued_sft/s0"]
    assert all((out / n / "result.json").exists() for n in names)
    # the guarded run checked its probe every 2 iterations, kept a best checkpoint, and says which it returned
    guarded = json.loads((out / "runs/default/grpo_guard/s0/result.json").read_text())
    # the shipped guard: the final policy (iteration 6) unless its last check dropped, then the best
    g = guarded["guard"]
    assert 0 <= g["best_iteration"] <= 6 and g["output_iteration"] in (6, g["best_iteration"])
    assert g["reason"].startswith("final policy at iteration 6" if g["output_iteration"] == 6 else "best verified")
    assert not (out / "runs/default/grpo_guard/s0/checkpoints").exists()
    history = json.loads((out / "runs/default/pipo/s0/history.json").read_text())
    assert len(history) == 6 and "pipo/probe_change" in history[2]
    # the report's signal per probe interval, read back from the history, is the one the trainer computed
    from components.compare.sections import signal_points

    logged = [h["pipo/probe_signal"] for h in history if "pipo/probe_signal" in h]
    assert logged and signal_points({"history": history})[0] == pytest.approx(logged)
    stamps = {n: (out / n / "result.json").stat().st_mtime_ns for n in names}
    import shutil

    shutil.rmtree(out / "runs/noisy/pipo/s0")
    assert main(args) == 0
    assert all((out / n / "result.json").stat().st_mtime_ns == stamps[n] for n in names if "noisy" not in n)
    assert (out / "runs/noisy/pipo/s0/result.json").exists()
    text = (tmp_path / "doc" / "r.md").read_text()
    assert "Units finished: 6 of 6 planned" in text and "| default | pipo | xi" in text
    runs = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], output_format="list")
    logged = {r.data.tags.get("compare.unit") for r in runs}
    assert set(names) <= logged


def test_the_recorded_sweep_command_names_no_folder_of_this_machine(tmp_path, monkeypatch):
    """The committed report lists the sweep commands (record_invocation): paths in the repository are
    relative, the temporary and home folders are $TMPDIR and ~, whatever folder the repository is in."""
    import tempfile

    from components.compare.report import record_invocation
    from components.config import REPO_ROOT

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    record_invocation(tmp_path / "out", ["python -m components.compare.run", "--params", str(REPO_ROOT / "params.yaml"),
                                         "--set", f"compare.report={tmp_path / 'tmp' / 'lr' / 'r.md'}",
                                         "--set", f"data.files=[{REPO_ROOT / 'a.parquet'}, {Path.home() / 'b'}]",
                                         "--set", "compare.out_dir=/var/tmp/x"])
    command = json.loads((tmp_path / "out" / "invocations.json").read_text())[0]["command"]
    assert command == ("'python -m components.compare.run' --params params.yaml --set 'compare.report=$TMPDIR/lr/r.md' "
                       "--set 'data.files=[a.parquet, ~/b]' --set compare.out_dir=/var/tmp/x")
