"""The benchmark sets evaluation scores every model on (params.yaml `eval.benchmarks`).

A benchmark is a prepared split of the task's own data (`split: eval`) or a verl/HF-layout file
(`file: data/benchmarks/math500.parquet`). Every failure names the benchmark and the file.

Benchmark rows go through data validation's row checks (components/data/validate.py `check_rows`):
prompt, answer and source are non-null text, the answer parses for the verifier, ids and answers
of repeated prompts agree, and the prompt is within data validation's byte bound (max_prompt_tokens *
BYTES_PER_TOKEN; 1 MiB at the default DEFAULT_MAX_PROMPT_TOKENS), so a huge prompt never reaches
a tokenizer. Failures name the benchmark, the file and the row ids.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.config import BenchmarkConfig

REQUIRED = ("id", "source", "prompt", "answer")
DEFAULT_MAX_PROMPT_TOKENS = 32768  # above the context of the models this pipeline evaluates


class BenchmarkError(ValueError):
    """A benchmark file is missing, has the wrong columns, holds no problems, or fails a row check."""


def load_benchmark(spec: BenchmarkConfig, prepared_dir: str | Path,
                   max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS) -> pd.DataFrame:
    """Canonical rows (id, source, prompt, answer, ...) of one benchmark, checked row by row."""
    from components.data.ingest import IngestError, load_files
    from components.data.validate import check_rows, max_prompt_bytes

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
    failures = check_rows(df, max_prompt_bytes(max_prompt_tokens))
    if failures:
        raise BenchmarkError(f"benchmark {spec.name!r}: {path} failed validation:\n" + "\n".join(
            f"  {what}: {count} rows, ids {ids}{' ...' if count > len(ids) else ''}"
            for what, count, ids in failures))
    return df.reset_index(drop=True)
