"""End to end through Prefect: a stage that fails fails the flow and leaves nothing half-written.

The served deployment itself (`make serve`, `prefect deployment run` with and without parameters) is run
end to end by tests/e2e/test_user_job.py; the in-process flow with every stage by tests/e2e/test_pipeline.py.
"""

from __future__ import annotations

import pytest

from tests.support.e2e import BIN, make_repo, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_failed_stage_fails_the_flow_and_leaves_no_output(tmp_path):
    repo = make_repo(tmp_path / "repo", ["data.source=verl", "data.files=[missing/train.parquet]"])
    proc = run([str(BIN / "python"), "-m", "flows.pipeline"], repo, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "missing/train.parquet" in out and "stage 'prepare' failed" in out
    assert not (repo / "data" / "prepared").exists()
    assert not (repo / "models" / "init").exists() and not (repo / "models" / "sft").exists()
