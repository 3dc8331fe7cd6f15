"""Data that used to pass ingest silently wrong: answer-only data when SFT asks for worked solutions,
a list ground truth of which only the first answer was kept, and an empty data_source scored as math.
Each is now refused at ingest with one line naming the rows (or the setting)."""

from pathlib import Path

import pandas as pd
import pytest

from components.config import load_config
from components.data.ingest import IngestError, load_files, load_source
from components.data.prepare import prepare


def _verl(tmp_path: Path, ground_truths: list, sources: list[str] | None = None) -> Path:
    path = tmp_path / "rows.parquet"
    pd.DataFrame([{"data_source": (sources or ["math"] * len(ground_truths))[i],
                   "prompt": [{"role": "user", "content": f"{i}+{i + 1}="}],
                   "reward_model": {"ground_truth": gt}} for i, gt in enumerate(ground_truths)]).to_parquet(path)
    return path


def test_answer_only_data_fails_prepare_naming_num_sft(tmp_path):
    path = _verl(tmp_path, [str(2 * i + 1) for i in range(12)])  # answers, no worked solutions
    out = tmp_path / "prepared"
    cfg = load_config(overrides=["data.source=verl", f"data.files=[{path}]", "data.num_eval=4", "data.num_sft=5",
                                 f"data.out_dir={out}"])
    with pytest.raises(IngestError) as err:
        prepare(cfg, lambda prompt, messages=None: len(prompt), 100, tmp_path / "reports")
    message = str(err.value)
    assert "\n" not in message
    assert "no rows with a worked solution; data.num_sft=5 asked for them" in message
    assert "answer-only data" in message
    assert not out.exists()
    assert "FAILED" in (tmp_path / "reports" / "report.md").read_text()


def test_list_ground_truth_with_two_answers_is_refused_naming_the_row(tmp_path):
    path = _verl(tmp_path, [["1"], ["3", "3.0"], ["5", " 5 "], []])
    with pytest.raises(IngestError) as err:
        load_files([str(path)], "verl")
    message = str(err.value)
    assert "\n" not in message
    assert "rows rows-000001 give several reference answers" in message and "'3.0'" in message
    assert "rows-000000" not in message and "rows-000002" not in message  # one answer, or one repeated


@pytest.mark.parametrize("blank", ["", "   "])
def test_empty_data_source_is_refused_naming_the_rows(tmp_path, blank):
    path = _verl(tmp_path, ["1", "3", "5"], sources=["math", blank, blank])
    with pytest.raises(IngestError) as err:
        load_files([str(path)], "verl")
    message = str(err.value)
    assert "\n" not in message
    assert "empty data_source in rows rows-000001, rows-000002;" in message
