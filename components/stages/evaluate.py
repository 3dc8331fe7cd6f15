"""Stage `evaluate`: every model (untrained, SFT, RL) on every benchmark, with the provenance verify checks.

With sft.enabled=false models/sft is the untrained model again: it is scored once, as "untrained"."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from components.config import Config
from components.infra.atomic_io import atomic_dir, atomic_write_json
from components.infra.locks import locked_stage
from components.stages.common import MODEL_LABELS, evaluated_labels, model_dir, model_folder


@locked_stage("evaluate", lambda cfg: [cfg.eval.out_dir, cfg.eval.metrics_file])
def run(cfg: Config) -> dict:
    """Per-problem tables, a summary table (every summary metric), MLflow metrics, and the DVC metrics file
    (the accuracy metrics only: compared_metrics). Returns every summary metric."""
    import mlflow

    from components.eval.metrics import compared_metrics
    from components.eval.run import by_source, evaluate_folder, load_benchmarks
    from components.infra.provenance import eval_manifest, write_eval_manifest
    from components.infra.run_plots import eval_bars
    from components.infra.run_records import log_benchmark_inputs, log_figures
    from components.infra.tracking import metric_key, stage_run
    from components.reward.pool import pool_for

    benchmarks = load_benchmarks(cfg)  # a bad benchmark file fails before any generation
    results: dict[str, dict] = {}
    rows = []
    # The content hashes of every model folder and benchmark file scored, written with the tables
    # in the same atomic folder: verify refuses results that do not match the current models
    # (models/sft's too when it is not scored: its lineage decided which models were).
    manifest = eval_manifest({label: model_dir(label, cfg) for label in MODEL_LABELS}, cfg.eval.benchmarks,
                             cfg.data.out_dir)
    with stage_run(cfg, "evaluate"), atomic_dir(Path(cfg.eval.out_dir)) as tmp, pool_for(cfg.reward) as scorer:
        start = time.time()
        write_eval_manifest(tmp, manifest)
        log_benchmark_inputs(cfg, benchmarks)
        for label in evaluated_labels(cfg):
            results[label] = {}
            for bench, (summary, table) in evaluate_folder(model_folder(label, cfg), cfg, benchmarks, label,
                                                           scorer).items():
                (tmp / label).mkdir(exist_ok=True)
                table.to_parquet(tmp / label / f"{bench}.parquet", index=False)
                # beside the parquet (logged with the folder below): a table the MLflow UI previews
                mlflow.log_table(table, artifact_file=f"eval/{label}/{bench}.json")
                results[label][bench] = summary
                rows.append({"model": label, "benchmark": bench, "data_source": "all", **summary})
                sources = by_source(table, cfg.eval.num_samples)
                if len(sources) > 1:
                    rows.extend({"model": label, "benchmark": bench, "data_source": src, **m}
                                for src, m in sources.items())
                mlflow.log_metrics({metric_key(f"eval/{label}/{bench}/{k}"): float(v) for k, v in summary.items()})
        pd.DataFrame(rows).to_csv(tmp / "summary.csv", index=False)
        mlflow.log_metric("eval/seconds", time.time() - start)
        mlflow.log_artifacts(str(tmp), "eval")
        log_figures({"plots/eval_accuracy.png": eval_bars(results, ["pass@1", f"mean@{cfg.eval.num_samples}"])})
    atomic_write_json(cfg.eval.metrics_file, compared_metrics(results))
    return results
