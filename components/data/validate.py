"""Great Expectations checks on the sft/rl/eval splits before anything trains on them.

Derived facts (verifier can parse the answer, prompt length in bytes and tokens, eval prompt
leaked into training, a repeated prompt with another answer, the prompt key that training rows must
not share with an evaluation benchmark) become computed columns, so every check is a plain column
expectation whose failures GX reports by row id.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pandas as pd

from components.data import messages_column
from components.data.messages import MESSAGES_CHECK, count_prompt_tokens, messages_ok, model_text_bytes
from components.reward.score import is_verifiable, reference_cost_refusal

MAX_IDS_SHOWN = 20
NOT_NULL_COLUMNS = ("id", "prompt", "answer", "source")
# A prompt longer than max_prompt_tokens * BYTES_PER_TOKEN UTF-8 bytes cannot fit the token budget,
# so it is rejected before the tokenizer sees it (a 10 MB prompt made the tokenizer peak at 4.7 GB,
# a 100 MB one aborted it). Generous on purpose: a character-level tokenizer packs at most 4 bytes
# into a token, BPE tokenizers about 4 on English and far fewer on other scripts; only a prompt
# made mostly of long merged runs (e.g. 64 '=' in one token) could exceed 32 and be refused by
# bytes although its tokens would fit.
BYTES_PER_TOKEN = 32
EVAL_LEAK = "eval prompt not in sft or rl (whitespace ignored)"
BENCHMARK_LEAK = "prompt not in eval benchmark {} (whitespace ignored)"
TRAIN_SPLITS = ("sft", "rl")
ANSWER_CONFLICT = "a repeated prompt has one answer"
# A math reference the verifier refuses before comparing (too costly to compute, like
# \binom{9999}{4999}^{9999}, or juxtaposed numbers): every completion would score 0.0 against it.
# Reported apart from "answer parseable by the verifier" to say why.
ANSWER_WITHIN_LIMITS = "answer within the verifier's cost limits (components/reward/guards.py, normalize.py)"
_WHITESPACE = re.compile(r"\s+")


def prompt_key(prompt: Any) -> str | None:
    """A prompt with all whitespace removed: '1 + 6= ' and '1+6=' are the same problem for leakage
    and duplicate checks. None for a missing or non-text prompt."""
    return _WHITESPACE.sub("", prompt) if isinstance(prompt, str) else None


def max_prompt_bytes(max_prompt_tokens: int) -> int:
    """The byte bound checked before tokenizing (see BYTES_PER_TOKEN)."""
    return max_prompt_tokens * BYTES_PER_TOKEN


def _utf8_length(text: str, limit: int) -> int:
    """UTF-8 byte length, without encoding a text that is already longer than `limit` in characters
    (each character is at least one byte, so it is over the bound either way)."""
    if len(text) > limit:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def answer_conflicts(df: pd.DataFrame) -> pd.Series:
    """True for rows whose prompt (ignoring whitespace) occurs with another non-null answer
    (answers compared after stripping): keeping either one silently would train on a coin flip."""
    keys = df["prompt"].map(prompt_key)
    answers = df["answer"].map(lambda a: a.strip() if isinstance(a, str) else None)
    if keys.isna().all():
        return pd.Series(False, index=df.index)
    distinct = answers.groupby(keys, dropna=True).transform("nunique")
    return distinct.fillna(0).gt(1).reindex(df.index, fill_value=False).astype(bool)


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
    df: pd.DataFrame, split: str, train_keys: set[str], count_tokens: Callable[..., int] | None,
    byte_limit: int,
) -> pd.DataFrame:
    out = df.copy()
    out["answer_verifiable"] = [
        is_verifiable(str(s), a) if isinstance(a, str) else False for s, a in zip(out["source"], out["answer"])
    ]
    out["answer_within_limits"] = [  # a missing answer is the not-null check's to report
        not isinstance(a, str) or reference_cost_refusal(str(s), a) is None
        for s, a in zip(out["source"], out["answer"])
    ]
    messages = messages_column(out)
    out["messages_ok"] = [messages_ok(p, m) for p, m in zip(out["prompt"], messages)]
    # None for a missing prompt: the not-null check reports it, the length checks skip it. Only a
    # prompt within the byte bound is tokenized; a longer one is reported by the byte check.
    sizes = [model_text_bytes(p, m, byte_limit, _utf8_length) for p, m in zip(out["prompt"], messages)]
    out["prompt_bytes"] = pd.Series(sizes, index=out.index, dtype="float64")
    if count_tokens is not None:
        out["prompt_tokens"] = pd.Series(
            [count_prompt_tokens(count_tokens, p, m) if n is not None and n <= byte_limit else None
             for p, m, n in zip(out["prompt"], messages, sizes)],
            index=out.index, dtype="float64")
    if split == "eval":
        out["prompt_in_train"] = out["prompt"].map(prompt_key).isin(train_keys)
    if split in TRAIN_SPLITS:  # compared with every benchmark's keys; an oversized prompt is already refused
        out["prompt_key"] = pd.Series([prompt_key(p) if n is not None and n <= byte_limit else None
                                       for p, n in zip(out["prompt"], sizes)], index=out.index, dtype=object)
    return out


def _expectations(split: str, max_prompt_tokens: int,
                  benchmark_keys: dict[str, list[str]]) -> list[tuple[str, Any]]:
    """(description, expectation) pairs for one split; benchmark_keys: {benchmark: its prompt keys}."""
    import great_expectations.expectations as gxe

    checks: list[tuple[str, Any]] = [(f"{c} not null", gxe.ExpectColumnValuesToNotBeNull(column=c))
                                     for c in NOT_NULL_COLUMNS]
    byte_limit = max_prompt_bytes(max_prompt_tokens)
    checks += [
        ("answer parseable by the verifier",
         gxe.ExpectColumnValuesToBeInSet(column="answer_verifiable", value_set=[True])),
        (ANSWER_WITHIN_LIMITS, gxe.ExpectColumnValuesToBeInSet(column="answer_within_limits", value_set=[True])),
        (MESSAGES_CHECK, gxe.ExpectColumnValuesToBeInSet(column="messages_ok", value_set=[True])),
        (f"prompt 1..{byte_limit} bytes (checked before tokenizing)",
         gxe.ExpectColumnValuesToBeBetween(column="prompt_bytes", min_value=1, max_value=byte_limit)),
        (f"prompt <= {max_prompt_tokens} tokens",
         gxe.ExpectColumnValuesToBeBetween(column="prompt_tokens", min_value=1, max_value=max_prompt_tokens)),
    ]
    if split == "eval":
        checks.append((EVAL_LEAK,
                       gxe.ExpectColumnValuesToBeInSet(column="prompt_in_train", value_set=[False])))
    if split in TRAIN_SPLITS:
        # One check per benchmark, so a failure names the benchmark the leaked prompts belong to.
        checks += [(BENCHMARK_LEAK.format(name), gxe.ExpectColumnValuesToNotBeInSet(column="prompt_key",
                                                                                   value_set=keys))
                   for name, keys in benchmark_keys.items()]
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
    # GX keeps the suite's order; match results to descriptions by the id the suite gave each
    # expectation, to be safe (the benchmark checks share type and column).
    descriptions = {e.id: d for d, e in checks}
    for r in result.results:
        config = r.expectation_config
        column = str(config.kwargs.get("column"))
        raised = (r.exception_info or {}).get("raised_exception", False)
        ids = list(dict.fromkeys(_id_label(row.get("id")) for row in r.result.get("unexpected_index_list") or []))
        count = int(r.result.get("unexpected_count") or 0)
        out.append(CheckResult(
            split=name, expectation=config.type, column=column,
            description=descriptions.get(config.id, config.type)
            + (" (GX raised an error)" if raised else ""),
            success=bool(r.success) and not raised, failing_count=count, failing_ids=ids[:MAX_IDS_SHOWN],
        ))
    return out


def validate_splits(
    splits: dict[str, pd.DataFrame], count_tokens: Callable[[str], int], max_prompt_tokens: int,
    benchmarks: dict[str, pd.DataFrame] | None = None,
) -> ValidationReport:
    """Run the expectation suites on every split plus the cross-split checks. benchmarks: {name:
    rows} of the evaluation benchmarks read from files, whose prompts sft and rl must not contain."""
    import great_expectations as gx  # ~17 s cold import: only when validation actually runs
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    byte_limit = max_prompt_bytes(max_prompt_tokens)
    train_keys = {prompt_key(p) for s in ("sft", "rl") if s in splits for p in splits[s]["prompt"]
                  if isinstance(p, str) and len(p) <= byte_limit}
    benchmark_keys = {name: sorted({k for k in df["prompt"].map(prompt_key) if k is not None})
                      for name, df in (benchmarks or {}).items()}
    checks: list[CheckResult] = []
    for split, df in splits.items():
        frame = _with_computed_columns(df, split, train_keys, count_tokens, byte_limit)
        checks += _run_suite(context, split, frame, _expectations(split, max_prompt_tokens, benchmark_keys))
    combined = pd.concat([df[["id", "prompt", "answer"]] for df in splits.values()], ignore_index=True)
    combined["answer_consistent"] = ~answer_conflicts(combined)
    checks += _run_suite(context, "all", combined[["id", "answer_consistent"]],
                         [("id unique across all splits", gxe.ExpectColumnValuesToBeUnique(column="id")),
                          (ANSWER_CONFLICT, gxe.ExpectColumnValuesToBeInSet(column="answer_consistent",
                                                                             value_set=[True]))])
    return ValidationReport(checks=checks, rows={s: len(df) for s, df in splits.items()})


def check_rows(df: pd.DataFrame, byte_limit: int) -> list[tuple[str, int, list[str]]]:
    """Data validation's row checks that need neither a tokenizer nor other splits, evaluated with pandas
    (no GX): for data that is scored but never trained on, i.e. benchmark files. A prompt, answer or
    source that is not text counts as null, as in ingest. Returns (description, failing count,
    first failing ids) per failed check; empty when every row passes."""
    frame = df.reset_index(drop=True).copy()
    for column in ("prompt", "answer", "source"):
        frame[column] = pd.Series([v if isinstance(v, str) else None for v in frame[column]], dtype=object)
    frame = _with_computed_columns(frame, "benchmark", set(), None, byte_limit)
    bad: list[tuple[str, pd.Series]] = [(f"{c} not null", frame[c].isna()) for c in NOT_NULL_COLUMNS]
    bad += [
        ("answer parseable by the verifier", ~frame["answer_verifiable"].astype(bool)),
        (ANSWER_WITHIN_LIMITS, ~frame["answer_within_limits"].astype(bool)),
        (MESSAGES_CHECK, ~frame["messages_ok"].astype(bool)),
        (f"prompt 1..{byte_limit} bytes (checked before tokenizing)",
         frame["prompt_bytes"].notna() & ~frame["prompt_bytes"].between(1, byte_limit)),
        ("id unique", frame["id"].notna() & frame["id"].duplicated(keep=False)),
        (ANSWER_CONFLICT, answer_conflicts(frame)),
    ]
    out = []
    for description, mask in bad:
        if mask.any():
            ids = [_id_label(v) for v in frame.loc[mask, "id"]]
            out.append((description, len(ids), list(dict.fromkeys(ids))[:MAX_IDS_SHOWN]))
    return out


def summarize_failures(report: ValidationReport) -> str:
    """One line per failed check, with its ids: the message of a DataValidationError."""
    return "\n".join(
        f"  [{c.split}] {c.description} ({c.expectation} on {c.column}): {c.failing_count} rows, ids "
        f"{json.dumps(c.failing_ids)}{' ...' if c.failing_count > len(c.failing_ids) else ''}"
        for c in report.failures
    )
