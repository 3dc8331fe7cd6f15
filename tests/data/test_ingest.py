"""Ingesting local files (verl and Hugging Face layouts), the hub, and file-source splits."""

import json
from pathlib import Path

import pandas as pd
import pytest

from components.config import load_config
from components.data import COLUMNS
from components.data.ingest import IngestError, load_files, load_hub, load_source
from components.reward.score import compute_score

BENCH = Path(__file__).resolve().parents[2] / "data" / "benchmarks"
FILES = [str(BENCH / f"{n}.parquet") for n in ("math500", "aime25", "amc23")]


@pytest.fixture(scope="module")
def benchmarks() -> pd.DataFrame:
    return load_files(FILES, "verl")


def test_benchmark_row_counts_and_columns(benchmarks):
    assert list(benchmarks.columns) == COLUMNS
    assert benchmarks.groupby("source").size().to_dict() == {
        "HuggingFaceH4/MATH-500": 500, "math-ai/aime25": 30, "math-ai/amc23": 40}
    assert benchmarks["id"].is_unique and benchmarks["answer"].notna().all()
    assert benchmarks["prompt"].str.contains(r"put your final answer in \\boxed", regex=True).all()


def test_benchmark_answers(benchmarks):
    answers = dict(zip(benchmarks["id"], benchmarks["answer"]))
    # MATH-500's ground truth is a whole solution: the answer is its last box (read from the file).
    assert answers["math500-000000"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert answers["math500-000002"] == r"\frac{14}{3}"
    assert answers["math500-000003"] == "9"
    assert answers["math500-000004"] == r"\text{Evelyn}"
    assert answers["math500-000149"] == "49"  # two boxes, same answer
    assert answers["aime25-000000"] == "70" and answers["amc23-000000"] == "27"
    math500 = benchmarks[benchmarks["source"] == "HuggingFaceH4/MATH-500"]
    assert math500["solution"].notna().all()  # the worked solution is kept
    assert benchmarks[benchmarks["source"] != "HuggingFaceH4/MATH-500"]["solution"].isna().all()


def test_benchmark_answers_score_against_themselves(benchmarks):
    ok = [compute_score(r.source, f"The answer is \\boxed{{{r.answer}}}.", r.answer) for r in benchmarks.itertuples()]
    rate = sum(ok) / len(ok)
    print(f"self-verification rate {rate:.4f} over {len(ok)} benchmark problems")
    assert rate >= 0.99


def test_hf_layouts_from_jsonl(tmp_path):
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 2 apples and buys 40. How many?", "answer": "2 + 40 = <<2+40=42>>42\n#### 42"},
        {"question": "1000 + 234?", "answer": "#### 1,234"},
    ]) + "\n")
    math = tmp_path / "math.json"
    math.write_text("\n".join(json.dumps(r) for r in [
        {"problem": "What is 1/2 + 1/4?", "solution": r"It is $\boxed{\frac{3}{4}}$.", "level": "Level 1"},
        {"problem": "2+2?", "solution": r"$\boxed{4}$", "answer": "4"},
    ]))
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"question": "3+4=", "answer": "7"}) + "\n")
    df = load_files([str(gsm), str(math), str(plain)], "hf")
    assert list(df["answer"]) == ["42", "1234", r"\frac{3}{4}", "4", "7"]
    assert list(df["id"]) == ["gsm-000000", "gsm-000001", "math-000000", "math-000001", "plain-000000"]
    assert df["solution"].iloc[0].endswith("#### 42") and df["solution"].iloc[2].startswith("It is")
    assert df["solution"].iloc[4] is None
    assert json.loads(df["metadata"].iloc[2])["level"] == "Level 1"


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(IngestError, match="not found: .*nope.parquet"):
        load_files([str(tmp_path / "nope.parquet")], "verl")


def test_unreadable_file_names_the_path(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(IngestError, match="cannot read data file .*bad.parquet"):
        load_files([str(bad)], "verl")


def test_wrong_columns_name_the_file_and_columns(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"text": "hi", "label": 1}) + "\n")
    with pytest.raises(IngestError, match=r"odd.jsonl.*found \['label', 'text'\].*expected question or problem"):
        load_files([str(path)], "hf")
    with pytest.raises(IngestError, match=r"odd.jsonl.*expected data_source, prompt, reward_model"):
        load_files([str(path)], "verl")


def test_hub_without_network_names_the_dataset():
    with pytest.raises(IngestError, match="cannot load hub dataset 'pipo-test/no-such-dataset'"):
        load_hub("pipo-test/no-such-dataset", "train")


def test_load_source_file_splits(tmp_path):
    cfg = load_config(overrides=["data.source=verl", f"data.files=[{FILES[0]}]", "data.num_eval=50",
                                 "data.num_rl=300", "data.num_sft=100"])
    splits = load_source(cfg.data, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"sft": 100, "rl": 300, "eval": 50}
    assert not set(splits["eval"]["prompt"]) & (set(splits["rl"]["prompt"]) | set(splits["sft"]["prompt"]))
    ids = pd.concat(splits.values())["id"]
    assert ids.is_unique and splits["sft"]["id"].str.endswith("-sft").all()
    again = load_source(cfg.data, seed=0)
    assert all(splits[s].equals(again[s]) for s in splits)
    other = load_source(cfg.data, seed=1)
    assert list(other["eval"]["id"]) != list(splits["eval"]["id"])


def test_load_source_with_eval_files_decontaminates(tmp_path):
    cfg = load_config(overrides=["data.source=verl", f"data.files=[{FILES[1]},{FILES[0]}]",
                                 f"data.eval_files=[{FILES[1]}]"])
    splits = load_source(cfg.data, seed=0)
    assert len(splits["eval"]) == 30  # eval files are used whole
    assert len(splits["rl"]) == 500  # aime25 rows dropped from training: they are the eval set
    assert splits["sft"]["id"].str.startswith("math500-").all()  # only MATH-500 has worked solutions


def test_verl_ingest_keeps_the_chat_messages_and_hf_rows_have_none(tmp_path):
    chat = [{"role": "system", "content": "Put the answer in \\boxed{}."}, {"role": "user", "content": "What is 2+3?"}]
    verl = tmp_path / "chat.parquet"  # parquet hands the messages back as numpy arrays of dicts
    pd.DataFrame([{"data_source": "math", "prompt": chat, "reward_model": {"ground_truth": "5"}}]).to_parquet(verl)
    plain = tmp_path / "plain.jsonl"  # verl layout with a plain-text prompt
    plain.write_text(json.dumps({"data_source": "math", "prompt": "plain 1+1?", "reward_model": {"ground_truth": "2"}})
                     + "\n")
    hf = tmp_path / "hf.jsonl"
    hf.write_text(json.dumps({"question": "3+4=", "answer": "7"}) + "\n")
    rows = load_files([str(verl), str(plain), str(hf)], None)
    assert rows["prompt"].tolist() == ["What is 2+3?", "plain 1+1?", "3+4="]  # the last user message's text
    assert json.loads(rows["messages"].iloc[0]) == chat  # the system prompt survives to rollout
    assert rows["messages"].iloc[1] is None and rows["messages"].iloc[2] is None


def test_benchmark_messages_end_with_their_prompt(benchmarks):
    last = [json.loads(m)[-1] for m in benchmarks["messages"]]
    assert [m["role"] for m in last] == ["user"] * len(benchmarks)
    assert [m["content"] for m in last] == benchmarks["prompt"].tolist()
