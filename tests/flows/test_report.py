"""flows/report.py: the markdown a flow run publishes in Prefect (the eval table, the verdict, MLflow links)."""

from __future__ import annotations

from flows import report

RESULTS = {"sft": {"chain_sum": {"pass@1": 0.642, "mean@4": 0.6, "num_problems": 500.0}},
           "rl": {"chain_sum": {"pass@1": 0.866, "mean@4": 0.85, "num_problems": 500.0}}}
VERDICT = {"promoted": True, "registered_version": 3, "score": "greedy", "num_problems": 500,
           "rl_vs_sft": {"diff": 0.224, "ci_low": 0.184, "ci_high": 0.264, "mcnemar_p": 3.49e-26, "passed": True}}


def test_the_report_holds_the_table_the_verdict_and_the_links():
    md = report.report_markdown(RESULTS, VERDICT, {"rl run": "http://ui/#/experiments/1/runs/abc"}, "Run x")
    assert "| model | benchmark | pass@1 | mean@4 |" in md
    assert "| rl | chain_sum | 0.866 | 0.850 |" in md and "| sft | chain_sum | 0.642 | 0.600 |" in md
    assert "num_problems" not in md
    assert "**Promoted**: registered version 3" in md
    assert "- rl vs sft: gain +0.224 (interval +0.184 .. +0.264), McNemar p 3.49e-26, passed" in md
    assert "- [rl run](http://ui/#/experiments/1/runs/abc)" in md


def test_the_verdict_as_the_dvc_metrics_file_holds_it_reads_without_gaps():
    from components.gate.promotion import compared_verdict

    md = report.report_markdown(RESULTS, compared_verdict(VERDICT), {}, "Run z")
    assert "**Promoted**: registered version 3.\n" in md and "None" not in md
    assert "- rl vs sft: gain +0.224" in md


def test_a_run_without_results_says_so():
    md = report.report_markdown({}, None, {}, "Run y")
    assert "did not run" in md and "No verdict" in md


def test_links_go_to_the_tracking_server_or_the_local_ui(monkeypatch):
    assert report.ui_base("http://mlflow.example:8080/") == "http://mlflow.example:8080"
    monkeypatch.delenv("PIPO_MLFLOW_UI_URL", raising=False)
    assert report.ui_base("sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"
    monkeypatch.setenv("PIPO_MLFLOW_UI_URL", "http://host:5001")
    assert report.ui_base("sqlite:////x/mlflow.db") == "http://host:5001"


def test_links_name_the_stage_runs_of_the_pipeline_and_the_registered_version(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("pipo", artifact_location=(tmp_path / "a").as_uri())
    parent = client.create_run(exp, run_name="pipeline")
    child = client.create_run(exp, run_name="rl", tags={"mlflow.parentRunId": parent.info.run_id})
    client.create_run(exp, run_name="other")  # not this pipeline's
    links = report.mlflow_links(parent.info.run_id, exp, uri, "pipo-policy", VERDICT)
    assert links["rl run"].endswith(f"/#/experiments/{exp}/runs/{child.info.run_id}")
    assert "other run" not in links
    assert links["pipo-policy version 3"].endswith("/#/models/pipo-policy/versions/3")
