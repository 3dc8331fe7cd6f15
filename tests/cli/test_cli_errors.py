"""`python -m components.cli STAGE` answers an expected failure (a missing input, a failed data
validation, a full disk) with one line and exit status 2 (fix an input) or 1 (the run failed),
not a traceback; a bug keeps its traceback."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components import cli, stages
from components.data.prepare import DataValidationError
from components.data.validate import CheckResult, ValidationReport

ROOT = Path(__file__).resolve().parents[2]


def _validation_error() -> DataValidationError:
    check = CheckResult(split="rl", expectation="expect_column_values_to_not_be_null", column="prompt",
                        description="prompt not null", success=False, failing_count=1, failing_ids=["rows-000003"])
    return DataValidationError(ValidationReport(checks=[check], rows={"rl": 4}), Path("reports/v"))


def _stage_raising(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    def stage(cfg):
        raise exc

    monkeypatch.setattr(stages, "stage_function", lambda name: stage)
    status = cli.main(["prepare", "--params", str(ROOT / "params.yaml")])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("exc, status, message", [
    (OSError(errno.ENOSPC, "No space left on device", "models/rl/model.safetensors"), 1,
     "error: no space left on device writing models/rl/model.safetensors; free space there and rerun"),
    (OSError(errno.ENOSPC, "No space left on device"), 1,
     "error: no space left on device writing the stage's outputs; free space there and rerun"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "data/prepared/rl.parquet"), 2,
     "error: file not found: data/prepared/rl.parquet"),
    (FileNotFoundError("per-problem results not found: reports/eval/rl/x.parquet (run the evaluate stage first)"),
     2, "error: per-problem results not found: reports/eval/rl/x.parquet (run the evaluate stage first)"),
], ids=["enospc", "enospc-no-path", "missing-file", "missing-results"])
def test_expected_failures_print_one_line_and_exit_with_their_status(monkeypatch, capsys, exc, status, message):
    assert _stage_raising(monkeypatch, capsys, exc) == (status, message + "\n")


def test_failed_data_validation_prints_its_summary_while_a_bug_keeps_its_traceback(monkeypatch, capsys):
    status, err = _stage_raising(monkeypatch, capsys, _validation_error())
    assert status == 2
    assert err.startswith("error: data validation failed (report: reports/v/report.md):")
    assert "[rl] prompt not null" in err and "rows-000003" in err and "Traceback" not in err
    with pytest.raises(KeyError):  # not an expected failure: it propagates (Python prints the traceback)
        _stage_raising(monkeypatch, capsys, KeyError("bug"))


@pytest.mark.slow
def test_verify_before_evaluate_is_one_line_naming_the_stage_to_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PIPO_PRESET", "PIPO_PARENT_RUN_ID")}
    proc = subprocess.run([sys.executable, "-m", "components.cli", "verify", "--params", str(ROOT / "params.yaml")],
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "evaluate" in lines[0]
