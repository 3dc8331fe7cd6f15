"""The prepare stage: load splits, validate them, and publish them only if every check passes."""

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
from components.data.ingest import load_source
from components.io_utils import atomic_dir
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
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.md").write_text(report.to_markdown())
    (report_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")


def write_splits_atomically(splits: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """All splits appear together or not at all (see io_utils.atomic_dir)."""
    with atomic_dir(out_dir) as tmp:
        for split, df in splits.items():
            table = pa.Table.from_pandas(df[COLUMNS].astype(object).where(df[COLUMNS].notna(), None),
                                         schema=SCHEMA, preserve_index=False)
            pq.write_table(table, tmp / f"{split}.parquet")


def prepare(
    cfg: Config, count_tokens: Callable[[str], int], max_prompt_tokens: int, report_dir: Path
) -> dict[str, Any]:
    """Load, validate (report always written), then publish sft/rl/eval parquet files atomically.

    Returns {split: {"rows": n, "hash": sha256}}; raises DataValidationError before touching
    data.out_dir when any expectation fails.
    """
    splits = load_source(cfg.data, cfg.seed)
    report = validate_splits(splits, count_tokens, max_prompt_tokens)
    _write_report(report, Path(report_dir))
    if not report.success:
        raise DataValidationError(report, Path(report_dir))
    write_splits_atomically({s: splits[s] for s in SPLITS}, Path(cfg.data.out_dir))
    return {s: {"rows": len(splits[s]), "hash": content_hash(splits[s])} for s in SPLITS}
