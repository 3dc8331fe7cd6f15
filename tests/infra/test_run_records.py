"""What stage runs record for the MLflow UI besides metrics: the data as dataset inputs (the Dataset column
and filter), RL curves and eval bars as PNGs, per-problem tables as JSON the UI previews. On a real
sqlite store in tmp_path (one per module)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from dvc_data.hashfile.hash import file_md5 as dvc_file_md5
from mlflow import MlflowClient

from components.config import load_config
from components.eval.metrics import summarise
from components.infra.run_plots import eval_bars, rl_curves
from components.infra.run_records import EXP_ENV, log_benchmark_inputs, log_figures, log_split_inputs
from components.infra.tracking import stage_run
from tests.support.mlflow_store import database, store  # noqa: F401  (fixtures)




def write_split(cfg, name: str, rows: int) -> Path:
    path = Path(cfg.data.out_dir) / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [f"{name}{i}" for i in range(rows)], "source": "arith", "prompt": [f"{i}+1=" for i in range(rows)],
                  "answer": [str(i + 1) for i in range(rows)]}).to_parquet(path)
    return path


def inputs(run_id: str) -> dict[str, dict]:
    run = MlflowClient().get_run(run_id)
    return {d.dataset.name: {"digest": d.dataset.digest, "source": json.loads(d.dataset.source)["uri"],
                             "rows": json.loads(d.dataset.profile)["num_rows"],
                             "context": {t.key: t.value for t in d.tags}["mlflow.data.context"]}
            for d in run.inputs.dataset_inputs}


def test_prepared_splits_are_dataset_inputs_with_dvcs_md5_path_and_rows(store):
    cfg = load_config()
    path = write_split(cfg, "rl", 3)
    with stage_run(cfg, "rl") as run:
        log_split_inputs(cfg, ["rl"], context="training")
    assert inputs(run.info.run_id) == {"rl": {"digest": dvc_file_md5(str(path)), "source": "data/prepared/rl.parquet",
                                              "rows": 3, "context": "training"}}
    # the UI's Datasets filter is a search on them
    [found] = mlflow.search_runs(search_all_experiments=True, filter_string="dataset.name = 'rl'", output_format="list")
    assert found.info.run_id == run.info.run_id


def test_benchmarks_are_dataset_inputs_named_by_benchmark_with_the_rows_scored(store):
    cfg = load_config(overrides=["eval.benchmarks=[{name: chain_sum, split: eval, limit: 2}]"])
    path = write_split(cfg, "eval", 5)
    with stage_run(cfg, "verify") as run:
        log_benchmark_inputs(cfg, {"chain_sum": pd.read_parquet(path).head(2)})
    assert inputs(run.info.run_id) == {"chain_sum": {"digest": hashlib.md5(path.read_bytes()).hexdigest(),
                                                     "source": "data/prepared/eval.parquet", "rows": 2,
                                                     "context": "eval"}}


def test_rl_curves_put_each_metric_at_its_iterations():
    # a run resumed at iteration 5; PIPO's signal exists once its window filled (iteration 7 on)
    history = [{"reward/mean": 0.1 * i, **({"pipo/xi": 1.0} if i >= 2 else {})} for i in range(6)]
    figures = rl_curves(history, first_iteration=5)
    assert set(figures) == {"plots/rl_reward.png", "plots/rl_xi.png"}
    reward = figures["plots/rl_reward.png"].axes[0].lines[0]
    assert list(reward.get_xdata()) == [5, 6, 7, 8, 9, 10]
    assert list(reward.get_ydata()) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert list(figures["plots/rl_xi.png"].axes[0].lines[0].get_xdata()) == [7, 8, 9, 10]
    assert set(rl_curves([{"reward/mean": 0.5}])) == {"plots/rl_reward.png"}  # PIPO off: no xi figure


def test_eval_bars_draw_one_panel_per_metric_and_one_bar_per_model_and_benchmark():
    results = {"sft": {"a": {"pass@1": 0.25, "mean@4": 0.5}, "b": {"pass@1": 0.5, "mean@4": 0.5}},
               "rl": {"a": {"pass@1": 0.75, "mean@4": 0.5}, "b": {"pass@1": 1.0, "mean@4": 0.5}}}
    fig = eval_bars(results, ["pass@1", "mean@4"])
    left, right = fig.axes
    assert left.get_title() == "pass@1" and right.get_title() == "mean@4"
    assert [b.get_height() for b in left.patches] == [0.25, 0.5, 0.75, 1.0]  # sft a, b; rl a, b


def test_figures_are_logged_as_png_artifacts(store):
    cfg = load_config()
    with stage_run(cfg, "rl") as run:
        log_figures(rl_curves([{"reward/mean": 0.5}, {"reward/mean": 0.75}]))
    png = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="plots/rl_reward.png",
                                                   dst_path=str(store / "dl")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def per_problem(n: int, k: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"e{i}" for i in range(n)], "data_source": "arith", "prompt": ["1+1="] * n,
                         "answer": ["2"] * n, "greedy_completion": ["\\boxed{2}"] * n, "greedy_correct": [True] * n,
                         "sample_correct": [[True] * k] * n, "sample_answers": [["2"] * k] * n,
                         "sample_lengths": [[3] * k] * n})


def test_the_evaluate_stage_logs_previewable_tables_bars_and_its_benchmarks(store, monkeypatch):
    """The stage as `dvc repro` runs it, with generation replaced by fixed per-problem tables."""
    import components.eval.run as eval_run
    import components.reward.pool as pool
    from components.stages import evaluate

    cfg = load_config()
    path = write_split(cfg, "eval", 3)
    for folder in ("models/init", cfg.sft.out_dir, cfg.rl.out_dir):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "weights").write_text(folder)
    k = cfg.eval.num_samples
    monkeypatch.setattr(eval_run, "load_benchmarks", lambda cfg: {"chain_sum": pd.read_parquet(path)})
    monkeypatch.setattr(eval_run, "evaluate_folder", lambda folder, cfg, benchmarks, label, scorer: {
        "chain_sum": (summarise(per_problem(3, k), k), per_problem(3, k))})
    monkeypatch.setattr(pool, "pool_for", lambda reward: contextlib.nullcontext())
    evaluate.run(cfg)

    [run] = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`pipo.stage` = 'evaluate'",
                               output_format="list")
    assert run.info.run_name.startswith("evaluate · grpo+pipo · cfg-")
    assert inputs(run.info.run_id)["chain_sum"]["source"] == "data/prepared/eval.parquet"
    client = MlflowClient()
    assert {f.path for f in client.list_artifacts(run.info.run_id, "eval/rl")} == \
        {"eval/rl/chain_sum.parquet", "eval/rl/chain_sum.json"}
    table = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="eval/rl/chain_sum.json", dst_path=str(store / "dl"))).read_text())
    assert table["columns"][:2] == ["id", "data_source"] and len(table["data"]) == 3
    # MLflow's UI shows a file listed in this tag as a table (the artifact browser's table preview)
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "eval/rl/chain_sum.json", "type": "table"} in logged
    assert [f.path for f in client.list_artifacts(run.info.run_id, "plots")] == ["plots/eval_accuracy.png"]


@pytest.mark.slow
def test_every_stage_of_a_pipeline_run_says_what_ran_on_which_data(tmp_path, monkeypatch):
    """The five stages in process on the tiny model, inside a DVC experiment: names, dataset inputs
    linking the stages by digest, the RL curves, the eval table and bars, the version's report."""
    from components.stages import STAGE_NAMES, stage_function
    from tests.support.e2e import make_repo, mlflow_runs, registered_versions

    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    monkeypatch.delenv("PIPO_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv(EXP_ENV, "swank-rind")
    cfg = load_config(repo / "params.yaml", ["reward.workers=0", "verify.num_resamples=200"])
    for stage in STAGE_NAMES:
        stage_function(stage)(cfg)

    runs = {r.data.tags["pipo.stage"]: r for r in mlflow_runs(repo)}
    assert {s: r.info.run_name for s, r in runs.items()} == {
        "prepare": "prepare · swank-rind", "sft": "sft · swank-rind", "rl": "rl · grpo+pipo · swank-rind",
        "evaluate": "evaluate · grpo+pipo · swank-rind", "verify": "verify · grpo+pipo · swank-rind"}
    md5 = {s: hashlib.md5((repo / "data/prepared" / f"{s}.parquet").read_bytes()).hexdigest()
           for s in ("sft", "rl", "eval")}
    rows = {s: len(pd.read_parquet(repo / "data/prepared" / f"{s}.parquet")) for s in md5}
    def split(name: str, context: str) -> dict:
        return {"digest": md5[name], "source": f"data/prepared/{name}.parquet", "rows": rows[name], "context": context}

    assert inputs(runs["prepare"].info.run_id) == {s: split(s, "output") for s in md5}
    for stage in ("sft", "rl"):
        assert inputs(runs[stage].info.run_id) == {stage: split(stage, "training")}
    for stage in ("evaluate", "verify"):  # the benchmark is the prepared eval split: the same digest
        assert inputs(runs[stage].info.run_id) == {"chain_sum": {"digest": md5["eval"], "rows": rows["eval"],
                                                                 "source": "data/prepared/eval.parquet",
                                                                 "context": "eval"}}
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")

    def files(stage: str, folder: str) -> set[str]:
        return {f.path for f in client.list_artifacts(runs[stage].info.run_id, folder)}

    assert "plots/rl_reward.png" in files("rl", "plots")
    assert files("evaluate", "plots") == {"plots/eval_accuracy.png"}
    assert "eval/rl/chain_sum.json" in files("evaluate", "eval/rl")
    assert all("config.yaml" in files(s, "") for s in STAGE_NAMES)
    [version] = registered_versions(repo)
    assert version.description == (repo / "reports/verify/report.md").read_text()
    assert "| rl vs sft |" in version.description
