"""Loading benchmark files for evaluation: bad, empty and missing files are named; the shipped files load."""

from __future__ import annotations

import pandas as pd
import pytest

from components.config import BenchmarkConfig
from components.eval.benchmarks import BenchmarkError, load_benchmark


def test_benchmark_files_are_checked(tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"question_text": ["1+1"], "gold": ["2"]}).to_parquet(bad)
    with pytest.raises(BenchmarkError, match="bad.parquet"):
        load_benchmark(BenchmarkConfig(name="bad", file=str(bad)), tmp_path)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"question": pd.Series([], dtype=str), "answer": pd.Series([], dtype=str)}).to_parquet(empty)
    with pytest.raises(BenchmarkError, match="empty.parquet"):
        load_benchmark(BenchmarkConfig(name="empty", file=str(empty)), tmp_path)
    with pytest.raises(BenchmarkError, match="missing.parquet"):
        load_benchmark(BenchmarkConfig(name="m", file=str(tmp_path / "missing.parquet")), tmp_path)
    with pytest.raises(BenchmarkError, match="eval.parquet"):
        load_benchmark(BenchmarkConfig(name="s", split="eval"), tmp_path)


def test_real_benchmark_files_load():
    for name in ("math500", "aime25", "amc23"):
        df = load_benchmark(BenchmarkConfig(name=name, file=f"data/benchmarks/{name}.parquet"), "unused")
        assert len(df) >= 30 and df["answer"].astype(str).str.len().gt(0).all()
