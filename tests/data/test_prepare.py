"""The prepare stage: validated splits published atomically, failures leave out_dir untouched."""

import json
from pathlib import Path

import pandas as pd
import pytest

import components.data.prepare as prepare_mod
from components.config import load_config
from components.config.ownership import MARKER
from components.data import COLUMNS
from components.data.prepare import DataValidationError, prepare
from components.infra.atomic_io import atomic_dir, atomic_write_text
from tests.support.mlflow_store import empty_store


def _cfg(out_dir: Path):
    return load_config(overrides=["data.num_sft=20", "data.num_rl=50", "data.num_eval=10", f"data.out_dir={out_dir}"])


def test_success_writes_three_files_and_replaces_old_output(tmp_path):
    out, reports = tmp_path / "prepared", tmp_path / "reports"
    with atomic_dir(out) as previous:  # an older run's output (outside the repository: marked as the pipeline's)
        (previous / "stale.txt").write_text("from an older run")
    summary = prepare(_cfg(out), len, 16, reports)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "eval.parquet", "rl.parquet", "sft.parquet"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left
    assert {s: v["rows"] for s, v in summary.items()} == {"sft": 20, "rl": 50, "eval": 10}
    sft, rl = pd.read_parquet(out / "sft.parquet"), pd.read_parquet(out / "rl.parquet")
    assert list(sft.columns) == COLUMNS and sft["solution"].notna().all() and rl["solution"].isna().all()
    assert json.loads((reports / "report.json").read_text())["success"] is True
    assert (reports / "report.md").read_text().startswith("# Data validation: PASSED")
    again = prepare(_cfg(out), len, 16, reports)
    assert again == summary  # same seed, same content hashes
    assert len({v["hash"] for v in summary.values()}) == 3


def test_failure_raises_names_ids_and_leaves_out_dir_untouched(tmp_path, monkeypatch):
    out, reports = tmp_path / "prepared", tmp_path / "reports"
    with atomic_dir(out) as previous:
        (previous / "rl.parquet").write_text("previous good output")
    real_load = prepare_mod.load_source

    def leaky(data, seed):
        splits = real_load(data, seed)
        splits["rl"].loc[0, "prompt"] = splits["eval"].loc[2, "prompt"]
        splits["sft"].loc[1, "id"] = splits["eval"].loc[0, "id"]
        return splits

    monkeypatch.setattr(prepare_mod, "load_source", leaky)
    with pytest.raises(DataValidationError) as err:
        prepare(_cfg(out), len, 16, reports)
    message = str(err.value)
    assert "eval prompt not in sft or rl" in message and "chain_sum-eval-000002" in message
    assert "id unique across all splits" in message and "chain_sum-eval-000000" in message
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "rl.parquet"]
    assert (out / "rl.parquet").read_text() == "previous good output"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    report = json.loads((reports / "report.json").read_text())
    assert report["success"] is False
    assert "FAILED" in (reports / "report.md").read_text()


def test_failure_does_not_create_out_dir(tmp_path, monkeypatch):
    out = tmp_path / "never"
    with pytest.raises(DataValidationError, match="prompt <= 3 tokens"):
        prepare(_cfg(out), len, 3, tmp_path / "reports")
    assert not out.exists()


def _broken_source(data, seed):
    from components.data.ingest import IngestError

    raise IngestError("cannot read data file train.parquet: truncated footer")


def test_failure_before_validation_replaces_a_stale_passed_report(tmp_path, monkeypatch):
    out, reports = tmp_path / "prepared", tmp_path / "reports"
    prepare(_cfg(out), len, 16, reports)  # a previous, passing run
    assert (reports / "report.md").read_text().startswith("# Data validation: PASSED")
    monkeypatch.setattr(prepare_mod, "load_source", _broken_source)
    with pytest.raises(ValueError, match="truncated footer"):
        prepare(_cfg(out), len, 16, reports)
    md = (reports / "report.md").read_text()
    assert "PASSED" not in md and md.startswith("# Data validation: FAILED")
    assert "before validation" in md and "IngestError" in md and "truncated footer" in md
    report = json.loads((reports / "report.json").read_text())
    assert report["success"] is False and report["status"] == "error"
    assert sorted(p.name for p in reports.iterdir()) == [MARKER, "report.json", "report.md"]  # no temp files left


def test_run_prepare_never_logs_or_leaves_a_stale_passed_report(tmp_path, monkeypatch):
    """The stage itself: the failed MLflow run carries the new report, not the previous PASSED; a
    failure before prepare() even starts (the tokenizer budget) leaves NOT RUN on disk."""
    import mlflow

    from components.stages import common
    from components.stages import prepare as prepare_stage

    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(key, raising=False)  # restored after the test: stage_run sets them
    monkeypatch.chdir(tmp_path)
    uri = empty_store(tmp_path / 'mlflow.db')
    cfg = load_config(overrides=["data.num_sft=20", "data.num_rl=50", "data.num_eval=10", f"tracking.tracking_uri={uri}",
                                 "tracking.experiment=stale-report"])
    stale = tmp_path / common.VALIDATION_DIR

    def write_stale():  # as an earlier prepare run wrote it
        atomic_write_text(stale / "report.md", "# Data validation: PASSED\n")
        atomic_write_text(stale / "report.json", json.dumps({"success": True}))

    write_stale()
    monkeypatch.setattr(prepare_mod, "load_source", _broken_source)
    with pytest.raises(ValueError, match="truncated footer"):
        prepare_stage.run(cfg)
    assert "PASSED" not in (stale / "report.md").read_text()
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("stale-report")
    [run] = client.search_runs([experiment.experiment_id], "tags.`pipo.stage` = 'prepare'")
    assert run.info.status == "FAILED" and "truncated footer" in run.data.tags["pipo.end_reason"]
    logged = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="validation/report.md",
                                                 dst_path=str(tmp_path / "downloaded"), tracking_uri=uri)
    text = Path(logged).read_text()
    assert text.startswith("# Data validation: FAILED") and "PASSED" not in text

    write_stale()

    def no_tokenizer(cfg):
        raise OSError("tokenizer folder not found")

    monkeypatch.setattr(prepare_stage, "prompt_budget", no_tokenizer)
    with pytest.raises(OSError, match="tokenizer folder"):
        prepare_stage.run(cfg)
    assert (stale / "report.md").read_text().startswith("# Data validation: NOT RUN")
    assert json.loads((stale / "report.json").read_text())["success"] is False


def test_chat_messages_round_trip_through_the_prepared_splits(tmp_path):
    from components.data import messages_column
    from components.stages.common import read_split

    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
    verl = tmp_path / "chat.parquet"
    pd.DataFrame([{"data_source": "math", "prompt": [*chat[:1], {"role": "user", "content": f"What is {i}+3?"}],
                   "reward_model": {"ground_truth": f"\\boxed{{{i + 3}}}"}} for i in range(12)]).to_parquet(verl)
    out = tmp_path / "prepared"
    cfg = load_config(overrides=["data.source=verl", f"data.files=[{verl}]", "data.num_eval=2", "data.num_rl=10",
                                 "data.num_sft=3", f"data.out_dir={out}"])
    prepare(cfg, lambda prompt, messages=None: len(prompt), 16, tmp_path / "reports")
    for split in ("sft", "rl", "eval"):
        df = read_split(cfg, split)
        assert list(df.columns) == COLUMNS
        assert [json.loads(m) for m in df["messages"]] == [[chat[0], {"role": "user", "content": p}]
                                                            for p in df["prompt"]]
    # a split written before the column existed reads as plain-text prompts
    old = tmp_path / "old.parquet"
    pd.read_parquet(out / "rl.parquet").drop(columns="messages").to_parquet(old)
    assert messages_column(pd.read_parquet(old)) == [None] * 10
