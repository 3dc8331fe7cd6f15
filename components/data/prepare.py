"""The prepare stage: load splits, validate them (against the evaluation benchmarks too), and publish
them only if every check passes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.config import Config
from components.data import COLUMNS, SPLITS
from components.data.ingest import IngestError, load_source
from components.infra.atomic_io import atomic_dir, atomic_write_text
from components.data.validate import ValidationReport, summarize_failures, validate_splits

# Every column is a (nullable) string: an all-None `solution` column (rl, eval) would otherwise be
# written with parquet's null type and change dtype between splits.
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS])


class DataValidationError(RuntimeError):
    """The splits failed validation; nothing was written to data.out_dir."""

    def __init__(self, report: ValidationReport, report_dir: Path):
        self.report = report
        super().__init__(f"data validation failed (report: {report_dir / 'report.md'}):\n{summarize_failures(report)}")


def content_hash(df: pd.DataFrame) -> str:
    """sha256 of the canonical rows in order, independent of parquet encoding details."""
    digest = hashlib.sha256()
    for row in df[COLUMNS].itertuples(index=False):
        digest.update(json.dumps(list(row), ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _write_report(report: ValidationReport, report_dir: Path) -> None:
    _write_report_files(report_dir, report.to_markdown(), report.to_dict())


def _write_report_files(report_dir: Path, markdown: str, data: dict[str, Any]) -> None:
    # Each file is replaced in one rename (json first, the human-facing md last): a reader never
    # sees a half-written report, nor an old verdict once a new run has started.
    atomic_write_text(Path(report_dir) / "report.json", json.dumps(data, indent=2) + "\n")
    atomic_write_text(Path(report_dir) / "report.md", markdown)


def reset_report(report_dir: Path, reason: str = "prepare started; no validation result yet") -> None:
    """Replace the previous run's report with a NOT RUN one, so a prepare that fails (or is killed)
    before validation never shows, or logs to MLflow, an old PASSED."""
    _write_report_files(report_dir, f"# Data validation: NOT RUN\n\n{reason}\n",
                        {"success": False, "status": "not_run", "reason": reason, "rows": {}, "checks": []})


def _report_early_failure(report_dir: Path, exc: BaseException) -> None:
    reason = f"prepare failed before validation: {type(exc).__name__}: {exc}"
    _write_report_files(report_dir, f"# Data validation: FAILED\n\n{reason}\n",
                        {"success": False, "status": "error", "reason": reason, "rows": {}, "checks": []})


def write_splits_atomically(splits: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """All splits appear together or not at all (see components.infra.atomic_io.atomic_dir)."""
    with atomic_dir(out_dir) as tmp:
        for split, df in splits.items():
            table = pa.Table.from_pandas(df[COLUMNS].astype(object).where(df[COLUMNS].notna(), None),
                                         schema=SCHEMA, preserve_index=False)
            pq.write_table(table, tmp / f"{split}.parquet")


def file_benchmarks(cfg: Config) -> dict[str, pd.DataFrame]:
    """{name: rows} of the evaluation benchmarks read from files, loaded as the evaluate stage loads
    them, so data validation can refuse training rows they contain. A `split` benchmark is the prepared eval
    split, which data validation already keeps disjoint from sft and rl."""
    from components.eval.benchmarks import load_benchmark

    return {b.name: load_benchmark(b, cfg.data.out_dir) for b in cfg.eval.benchmarks if b.file is not None}


def sft_rows(splits: dict[str, pd.DataFrame], cfg: Config) -> dict[str, pd.DataFrame]:
    """The splits with the SFT split as the sft stage needs it: worked solutions when SFT trains (an
    IngestError naming the fix when there are none), nothing when it does not (sft.enabled=false), so
    answer-only data passes and unused rows are neither validated nor written."""
    if not cfg.sft.enabled:
        return {**splits, "sft": splits["sft"].iloc[:0]}
    if splits["sft"].empty:
        raise IngestError(f"no rows with a worked solution; data.num_sft={cfg.data.num_sft} asked for them. SFT "
                          "needs a solution column, or a ground truth with '#### answer' or \\boxed{}; for "
                          "answer-only data set sft.enabled: false (RL then starts from model.name_or_path)")
    return splits


def prepare(
    cfg: Config, count_tokens: Callable[[str], int], max_prompt_tokens: int, report_dir: Path
) -> dict[str, Any]:
    """Load, validate (report always written), then publish sft/rl/eval parquet files atomically.

    Returns {split: {"rows": n, "hash": sha256}}; raises DataValidationError before touching
    data.out_dir when any expectation fails, including an sft or rl prompt that an evaluation
    benchmark (eval.benchmarks) contains.
    """
    reset_report(Path(report_dir))
    try:
        benchmarks = file_benchmarks(cfg)  # first: a bad benchmark file fails before any data download
        splits = sft_rows(load_source(cfg.data, cfg.seed), cfg)
        report = validate_splits(splits, count_tokens, max_prompt_tokens, benchmarks)
    except Exception as exc:
        _report_early_failure(Path(report_dir), exc)
        raise
    _write_report(report, Path(report_dir))
    if not report.success:
        raise DataValidationError(report, Path(report_dir))
    write_splits_atomically({s: splits[s] for s in SPLITS}, Path(cfg.data.out_dir))
    return {s: {"rows": len(splits[s]), "hash": content_hash(splits[s])} for s in SPLITS}
