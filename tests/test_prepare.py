"""The prepare stage: validated splits published atomically, failures leave out_dir untouched."""

import json
from pathlib import Path

import pandas as pd
import pytest

import components.data.prepare as prepare_mod
from components.config import load_config
from components.data import COLUMNS
from components.data.prepare import DataValidationError, prepare


def _cfg(out_dir: Path):
    return load_config(overrides=["data.num_sft=20", "data.num_rl=50", "data.num_eval=10", f"data.out_dir={out_dir}"])


def test_success_writes_three_files_and_replaces_old_output(tmp_path):
    out, reports = tmp_path / "prepared", tmp_path / "reports"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    summary = prepare(_cfg(out), len, 16, reports)
    assert sorted(p.name for p in out.iterdir()) == ["eval.parquet", "rl.parquet", "sft.parquet"]
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
    out.mkdir()
    (out / "rl.parquet").write_text("previous good output")
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
    assert [p.name for p in out.iterdir()] == ["rl.parquet"]
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
