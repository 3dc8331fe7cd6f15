"""Great Expectations checks on the sft/rl/eval splits before anything trains on them.

Derived facts (verifier can parse the answer, prompt length in tokens, eval prompt leaked into
training) become computed columns, so every check is a plain column expectation whose failures
GX reports by row id.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pandas as pd

from components.rewards import is_verifiable

MAX_IDS_SHOWN = 20
NOT_NULL_COLUMNS = ("id", "prompt", "answer", "source")


@dataclass
class CheckResult:
    split: str  # sft | rl | eval | all (cross-split checks)
    expectation: str  # GX expectation type
    column: str
    description: str
    success: bool
    failing_count: int = 0
    failing_ids: list[str] = field(default_factory=list)  # first MAX_IDS_SHOWN


@dataclass
class ValidationReport:
    checks: list[CheckResult]
    rows: dict[str, int]

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "rows": self.rows, "checks": [asdict(c) for c in self.checks]}

    def to_markdown(self) -> str:
        lines = [
            f"# Data validation: {'PASSED' if self.success else 'FAILED'}",
            "",
            "Rows: " + ", ".join(f"{s} {n}" for s, n in self.rows.items()),
            "",
            "| split | check | expectation | column | result | failing rows | first failing ids |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in self.checks:
            ids = ", ".join(c.failing_ids) + (" ..." if c.failing_count > len(c.failing_ids) else "")
            lines.append(f"| {c.split} | {c.description} | {c.expectation} | {c.column} | "
                         f"{'ok' if c.success else 'FAIL'} | {c.failing_count} | {ids} |")
        return "\n".join(lines) + "\n"


def _with_computed_columns(
    df: pd.DataFrame, split: str, train_prompts: set[str], count_tokens: Callable[[str], int]
) -> pd.DataFrame:
    out = df.copy()
    out["answer_verifiable"] = [
        is_verifiable(str(s), a) if isinstance(a, str) else False for s, a in zip(out["source"], out["answer"])
    ]
    # None for a missing prompt: the not-null check reports it, the length check skips it.
    out["prompt_tokens"] = pd.Series([count_tokens(p) if isinstance(p, str) else None for p in out["prompt"]],
                                     index=out.index, dtype="float64")
    if split == "eval":
        out["prompt_in_train"] = out["prompt"].isin(train_prompts)
    return out


def _expectations(split: str, max_prompt_tokens: int) -> list[tuple[str, Any]]:
    """(description, expectation) pairs for one split."""
    import great_expectations.expectations as gxe

    checks: list[tuple[str, Any]] = [(f"{c} not null", gxe.ExpectColumnValuesToNotBeNull(column=c))
                                     for c in NOT_NULL_COLUMNS]
    checks += [
        ("answer parseable by the verifier",
         gxe.ExpectColumnValuesToBeInSet(column="answer_verifiable", value_set=[True])),
        (f"prompt <= {max_prompt_tokens} tokens",
         gxe.ExpectColumnValuesToBeBetween(column="prompt_tokens", min_value=1, max_value=max_prompt_tokens)),
    ]
    if split == "eval":
        checks.append(("eval prompt not in sft or rl",
                       gxe.ExpectColumnValuesToBeInSet(column="prompt_in_train", value_set=[False])))
    if split == "sft":
        checks.append(("sft row has a solution", gxe.ExpectColumnValuesToNotBeNull(column="solution")))
    return checks


def _id_label(value: Any) -> str:
    return "<null id>" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _run_suite(context: Any, name: str, df: pd.DataFrame, checks: list[tuple[str, Any]]) -> list[CheckResult]:
    import great_expectations as gx

    batch_definition = (context.data_sources.add_pandas(f"ds_{name}").add_dataframe_asset(f"asset_{name}")
                        .add_batch_definition_whole_dataframe(f"batch_{name}"))
    suite = context.suites.add(gx.ExpectationSuite(name=f"suite_{name}"))
    for _, expectation in checks:
        suite.add_expectation(expectation)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df.reset_index(drop=True)})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]})
    out = []
    # GX keeps the suite's order; match results to descriptions by (type, column) to be safe.
    descriptions = {(e.expectation_type, e.column): d for d, e in checks}
    for r in result.results:
        config = r.expectation_config
        column = str(config.kwargs.get("column"))
        raised = (r.exception_info or {}).get("raised_exception", False)
        ids = list(dict.fromkeys(_id_label(row.get("id")) for row in r.result.get("unexpected_index_list") or []))
        count = int(r.result.get("unexpected_count") or 0)
        out.append(CheckResult(
            split=name, expectation=config.type, column=column,
            description=descriptions.get((config.type, column), config.type)
            + (" (GX raised an error)" if raised else ""),
            success=bool(r.success) and not raised, failing_count=count, failing_ids=ids[:MAX_IDS_SHOWN],
        ))
    return out


def validate_splits(
    splits: dict[str, pd.DataFrame], count_tokens: Callable[[str], int], max_prompt_tokens: int
) -> ValidationReport:
    """Run the expectation suites on every split plus the cross-split id check."""
    import great_expectations as gx  # ~17 s cold import: only when validation actually runs
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    train_prompts = {p for s in ("sft", "rl") if s in splits for p in splits[s]["prompt"].dropna()}
    checks: list[CheckResult] = []
    for split, df in splits.items():
        frame = _with_computed_columns(df, split, train_prompts, count_tokens)
        checks += _run_suite(context, split, frame, _expectations(split, max_prompt_tokens))
    combined = pd.concat([df[["id"]] for df in splits.values()], ignore_index=True)
    checks += _run_suite(context, "all", combined,
                         [("id unique across all splits", gxe.ExpectColumnValuesToBeUnique(column="id"))])
    return ValidationReport(checks=checks, rows={s: len(df) for s, df in splits.items()})


def summarize_failures(report: ValidationReport) -> str:
    """One line per failed check, with its ids: the message of a DataValidationError."""
    return "\n".join(
        f"  [{c.split}] {c.description} ({c.expectation} on {c.column}): {c.failing_count} rows, ids "
        f"{json.dumps(c.failing_ids)}{' ...' if c.failing_count > len(c.failing_ids) else ''}"
        for c in report.failures
    )
