"""The benchmark sets evaluation scores every model on (params.yaml `eval.benchmarks`).

A benchmark is a prepared split of the task's own data (`split: eval`) or a verl/HF-layout file
(`file: data/benchmarks/math500.parquet`). Every failure names the benchmark and the file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.config import BenchmarkConfig

REQUIRED = ("id", "source", "prompt", "answer")


class BenchmarkError(ValueError):
    """A benchmark file is missing, has the wrong columns, or holds no problems."""


def load_benchmark(spec: BenchmarkConfig, prepared_dir: str | Path) -> pd.DataFrame:
    """Canonical rows (id, source, prompt, answer, ...) of one benchmark."""
    from components.data.ingest import IngestError, load_files

    if spec.split is not None:
        path = Path(prepared_dir) / f"{spec.split}.parquet"
        if not path.exists():
            raise BenchmarkError(f"benchmark {spec.name!r}: prepared split not found: {path} "
                                 "(run the prepare stage first)")
        df = pd.read_parquet(path)
    else:
        path = Path(spec.file)
        if not path.exists():
            raise BenchmarkError(f"benchmark {spec.name!r}: file not found: {path}")
        try:
            df = load_files([str(path)], None)
        except IngestError as exc:
            raise BenchmarkError(f"benchmark {spec.name!r}: {exc}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise BenchmarkError(f"benchmark {spec.name!r}: {path} lacks column(s) {missing}")
    if spec.limit is not None:
        df = df.head(spec.limit)
    if df.empty:
        raise BenchmarkError(f"benchmark {spec.name!r}: {path} holds no problems")
    return df.reset_index(drop=True)
