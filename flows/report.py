"""What a flow run publishes in the Prefect UI: a markdown report (the eval table, the verdict, links to
its MLflow runs and registered version) and a link to the MLflow experiment.

Links point at the MLflow UI: the tracking server itself when tracking goes to one, else `make ui`'s
address (PIPO_MLFLOW_UI_URL, default http://127.0.0.1:5000).
"""

from __future__ import annotations

import os

SHOWN_METRICS = ("pass@1", "mean@", "pass@", "maj@")  # the table's columns, in this order of prefixes


def ui_base(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return os.environ.get("PIPO_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def _columns(results: dict) -> list[str]:
    names = {k for benches in results.values() for d in benches.values() for k in d}
    ordered = []
    for prefix in SHOWN_METRICS:
        ordered += sorted(n for n in names if n.startswith(prefix) and n not in ordered)
    return ordered


def eval_table(results: dict) -> str:
    """Models x benchmarks, the correctness metrics, as a markdown table."""
    if not results:
        return "_No evaluation results (the evaluate stage did not run)._"
    columns = _columns(results)
    lines = ["| model | benchmark | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for model, benches in results.items():
        for bench, d in benches.items():
            lines.append(f"| {model} | {bench} | " + " | ".join(
                f"{d[c]:.3f}" if c in d else "" for c in columns) + " |")
    return "\n".join(lines)


def verdict_lines(verdict: dict | None) -> list[str]:
    """The promotion gate's decision and each paired comparison (gain, its interval, McNemar's p)."""
    if not verdict:
        return ["_No verdict (the verify stage did not run)._"]
    # metrics/verify.json holds the compared numbers only; the score kind and problem count are in
    # reports/verify/verdict.json (the whole summary), said here when the verdict given has them
    scored = (f", score `{verdict['score']}` on {verdict['num_problems']} problems"
              if "score" in verdict and "num_problems" in verdict else "")
    lines = [f"**{'Promoted' if verdict.get('promoted') else 'Not promoted'}**: registered version "
             f"{verdict.get('registered_version')}{scored}.", ""]
    for name, c in verdict.items():
        if isinstance(c, dict) and "diff" in c:
            lines.append(f"- {name.replace('_', ' ')}: gain {c['diff']:+.3f} (interval {c['ci_low']:+.3f} .. "
                         f"{c['ci_high']:+.3f}), McNemar p {c.get('mcnemar_p', float('nan')):.3g}, "
                         f"{'passed' if c.get('passed') else 'failed'}")
    return lines


def report_markdown(results: dict, verdict: dict | None, links: dict[str, str], title: str) -> str:
    parts = [f"# {title}", "", "## Evaluation", "", eval_table(results), "", "## Verdict", "",
             *verdict_lines(verdict), "", "## MLflow", ""]
    parts += [f"- [{text}]({url})" for text, url in links.items()] or ["_No MLflow runs._"]
    return "\n".join(parts) + "\n"


def mlflow_links(parent_run_id: str, experiment_id: str, tracking_uri: str, registry_model: str,
                 verdict: dict | None) -> dict[str, str]:
    """Links to the parent run, its stage runs and the registered version, in the MLflow UI."""
    from mlflow import MlflowClient

    base = ui_base(tracking_uri)
    links = {"pipeline run": f"{base}/#/experiments/{experiment_id}/runs/{parent_run_id}"}
    children = MlflowClient(tracking_uri).search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=50)
    for run in sorted(children, key=lambda r: r.info.start_time or 0):
        name = run.info.run_name or run.data.tags.get("pipo.stage", run.info.run_id)
        links[f"{name} run"] = f"{base}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
    if verdict and verdict.get("registered_version") is not None:
        links[f"{registry_model} version {verdict['registered_version']}"] = \
            f"{base}/#/models/{registry_model}/versions/{verdict['registered_version']}"
    return links


def publish(results: dict, verdict: dict | None, parent_run_id: str, experiment_id: str, tracking_uri: str,
            registry_model: str, title: str) -> str:
    """Create the flow run's markdown report and the experiment link in Prefect; the markdown."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    links = mlflow_links(parent_run_id, experiment_id, tracking_uri, registry_model, verdict)
    markdown = report_markdown(results, verdict, links, title)
    create_markdown_artifact(markdown, key="pipeline-report", description=title)
    create_link_artifact(f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}", link_text="MLflow experiment",
                         key="mlflow-experiment", description="The MLflow experiment of this pipeline's runs")
    return markdown
