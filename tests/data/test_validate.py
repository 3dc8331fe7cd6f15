"""Great Expectations checks: each kind of bad row is reported by expectation and id."""

import json

import pandas as pd
import pytest

from components.config import TaskConfig
from components.data.arithmetic import generate_splits
from components.data.messages import MESSAGES_CHECK
from components.data.validate import check_rows, validate_splits

TASK = TaskConfig(name="chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=2)


def good_splits() -> dict[str, pd.DataFrame]:
    return generate_splits(TASK, num_sft=8, num_rl=12, num_eval=6, seed=0)


def _failed(report) -> dict[str, list[str]]:
    return {f"{c.split}:{c.description}": c.failing_ids for c in report.failures}


def test_good_splits_pass():
    report = validate_splits(good_splits(), len, 16)
    assert report.success, report.to_markdown()
    assert report.rows == {"sft": 8, "rl": 12, "eval": 6}
    assert "PASSED" in report.to_markdown()
    checks = report.to_dict()["checks"]
    # per split: 4 not-null, answer parseable, answer within the verifier's limits, messages, prompt
    # bytes, prompt tokens (+ solution for sft, leak for eval); across splits: unique ids and one
    # answer per repeated prompt
    assert len(checks) == 10 + 9 + 10 + 2 and all(c["success"] for c in checks)


def test_each_failure_is_named_with_ids():
    splits = good_splits()
    sft, rl, ev = splits["sft"], splits["rl"], splits["eval"]
    rl.loc[1, "id"] = rl.loc[0, "id"]  # duplicate id
    rl.loc[2, ["prompt", "answer"]] = ev.loc[3, ["prompt", "answer"]]  # eval prompt leaked into training
    sft.loc[4, "prompt"] = "1+" * 20 + "1="  # too long
    sft.loc[5, "answer"] = "forty-two"  # not a number: the verifier cannot use it
    sft.loc[6, "solution"] = None
    rl.loc[7, "answer"] = None
    report = validate_splits(splits, len, 16)
    assert not report.success
    failed = _failed(report)
    assert failed == {
        "all:id unique across all splits": ["chain_sum-rl-000000"],
        "eval:eval prompt not in sft or rl (whitespace ignored)": ["chain_sum-eval-000003"],
        "sft:prompt <= 16 tokens": ["chain_sum-sft-000004"],
        "sft:answer parseable by the verifier": ["chain_sum-sft-000005"],
        "sft:sft row has a solution": ["chain_sum-sft-000006"],
        "rl:answer not null": ["chain_sum-rl-000007"],
        "rl:answer parseable by the verifier": ["chain_sum-rl-000007"],
    }
    dup = next(c for c in report.failures if c.split == "all")
    assert dup.expectation == "expect_column_values_to_be_unique" and dup.failing_count == 2
    md = report.to_markdown()
    assert "FAILED" in md and "chain_sum-eval-000003" in md
    as_dict = report.to_dict()
    assert as_dict["success"] is False and sum(not c["success"] for c in as_dict["checks"]) == 7


def test_failing_ids_are_capped_at_20():
    splits = good_splits()
    splits["rl"] = generate_splits(TASK, num_sft=1, num_rl=40, num_eval=1, seed=1)["rl"]
    report = validate_splits(splits, lambda p: 100, 16)
    too_long = next(c for c in report.failures if c.split == "rl" and "tokens" in c.description)
    assert too_long.failing_count == 40 and len(too_long.failing_ids) == 20
    assert "..." in report.to_markdown()


@pytest.mark.parametrize("source", ["HuggingFaceH4/MATH-500"])
def test_math_answers_checked_with_math_verify(source):
    rows = pd.DataFrame({"id": ["m-0", "m-1"], "source": [source] * 2, "prompt": ["p0", "p1"],
                         "answer": [r"\frac{1}{2}", r"\frac{1}{"], "metadata": ["{}"] * 2, "solution": [None, None]})
    report = validate_splits({"eval": rows}, len, 16)
    assert _failed(report) == {"eval:answer parseable by the verifier": ["m-1"]}


def test_bad_chat_messages_are_named_by_id_and_system_prompts_count_as_tokens():
    splits = good_splits()
    rl = splits["rl"]
    p = rl["prompt"].tolist()
    system = {"role": "system", "content": "x" * 50}
    rl["messages"] = [
        json.dumps([system, {"role": "user", "content": p[0]}]),  # fine, but its system prompt is long
        json.dumps([{"role": "user", "content": p[1]}, {"role": "assistant", "content": "2"}]),  # ends on the answer
        json.dumps([{"role": "user", "content": p[2] + " "}]),  # not the prompt
        "[{'role': 'user'",  # not JSON
        json.dumps([{"role": "user", "content": [p[4]]}]),  # content not a string
        json.dumps([{"role": "user", "content": p[5]}]),  # fine
    ] + [None] * (len(rl) - 6)
    calls = []

    def count_tokens(prompt, messages=None):
        calls.append(messages)
        return len(prompt) + sum(len(m["content"]) for m in json.loads(messages)[:-1]) if messages else len(prompt)

    failed = _failed(validate_splits(splits, count_tokens, 16))
    assert failed == {f"rl:{MESSAGES_CHECK}": [f"chain_sum-rl-00000{i}" for i in (1, 2, 3, 4)],
                      "rl:prompt <= 16 tokens": ["chain_sum-rl-000000"]}
    assert calls.count(None) == len(calls) - 2  # only well-formed messages reach the counter
    assert [d for d, _, _ in check_rows(rl, 10_000)] == [MESSAGES_CHECK]  # benchmark files get the check too
