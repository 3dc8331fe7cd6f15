"""DVC sees the user's inputs: each data file is a dep of its own input stage, whose fingerprint in
data/inputs/ is a dep of prepare; a benchmark file must lie in data/benchmarks/ (a dep of the stages
that read it); a data path with `..` (which would put its fingerprint outside data/inputs/) is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from components.config import REPO_ROOT, ConfigError, load_config
from tests.support.e2e import BIN, make_repo, run

TRAIN = "data/train.parquet"


def answer_only_sums(n: int) -> pd.DataFrame:
    """verl layout, answer-only (sft.enabled=false): n distinct a+b prompts."""
    return pd.DataFrame([{"data_source": "reasoning_gym/chain_sum",
                          "prompt": [{"role": "user", "content": f"{a}+{b}="}],
                          "reward_model": {"style": "rule", "ground_truth": str(a + b)}}
                         for a, b in [(a, b) for a in range(10, 40) for b in range(10, 40)][:n]])


def test_editing_a_data_file_marks_its_input_stage_stale_and_repro_reruns_prepare(tmp_path):
    repo = make_repo(tmp_path / "repo", ["data.source=verl", f"data.files=[{TRAIN}]", "sft.enabled=false",
                                         "data.num_eval=4", "data.num_rl=100", "reward.workers=0"])
    answer_only_sums(20).to_parquet(repo / TRAIN)
    dvc = str(BIN / "dvc")
    assert f"Running stage 'input@{TRAIN}'" in run([dvc, "repro", f"input@{TRAIN}"], repo).stdout
    fingerprint = json.loads((repo / "data/inputs/files" / f"{TRAIN}.json").read_text())
    assert fingerprint["rows"] == 20 and fingerprint["file"] == TRAIN
    # prepare recorded as run on these inputs without running it (one prepare run keeps the test short):
    # from here on only a change DVC sees can make it stale
    (repo / "data/prepared").mkdir()
    (repo / "data/prepared/placeholder").write_text("not a prepare output")
    run([dvc, "commit", "--force", "prepare"], repo)
    assert "up to date" in run([dvc, "status", "--with-deps", "prepare"], repo).stdout

    answer_only_sums(40).to_parquet(repo / TRAIN)  # 20 more rows, same path
    status = run([dvc, "status"], repo).stdout
    assert f"input@{TRAIN}:" in status and f"modified:           {TRAIN}" in status, status
    again = run([dvc, "repro", "prepare"], repo).stdout
    assert "Running stage 'prepare'" in again, again
    assert len(pd.read_parquet(repo / "data/prepared/rl.parquet")) == 36  # 40 rows less num_eval
    assert not (repo / "data/prepared/placeholder").exists()


@pytest.mark.parametrize("key", ["data.files", "data.eval_files"])
def test_a_data_path_with_dotdot_is_refused_naming_the_key_and_the_fix(key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.source=verl", "data.files=[data/train.parquet]",
                               f"{key}=[data/ok.parquet, ../elsewhere/train.parquet]"])
    line = str(err.value).splitlines()[-1]
    assert f"{key}[1] ('../elsewhere/train.parquet') has a '..' segment" in line
    assert "use an absolute path or a path inside the project" in line


def test_a_benchmark_file_outside_data_benchmarks_is_refused_naming_the_entry(tmp_path):
    outside = tmp_path / "bench.parquet"
    outside.write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"eval.benchmarks=[{{name: a, split: eval}}, {{name: b, file: '{outside}'}}]"])
    message = str(err.value)
    assert "\n" not in message
    assert f"eval.benchmarks[1].file ('{outside}') is outside data/benchmarks/" in message
    assert "copy or link the file into data/benchmarks/" in message
    with pytest.raises(ConfigError, match=r"benchmarks\[0\]\.file .* is outside data/benchmarks/"):
        load_config(overrides=["eval.benchmarks=[{name: b, file: data/benchmarks/../train.parquet}]"])


def test_a_benchmark_file_in_data_benchmarks_or_linked_there_is_accepted(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data/benchmarks").mkdir(parents=True)
    (project / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    (project / "data/benchmarks/linked.parquet").symlink_to(REPO_ROOT / "data/benchmarks/amc23.parquet")
    monkeypatch.chdir(project)
    cfg = load_config(project / "params.yaml", [
        "eval.benchmarks=[{name: own, file: data/benchmarks/own.parquet}, "
        f"{{name: linked, file: {project}/data/benchmarks/linked.parquet}}]"])
    assert [b.name for b in cfg.eval.benchmarks] == ["own", "linked"]


def test_fingerprint_names_an_unreadable_file_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from components.cli import main

    monkeypatch.chdir(REPO_ROOT)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    out = tmp_path / "fp" / "bad.parquet.json"
    assert main(["fingerprint", str(bad), str(out), "--set", "data.source=verl", "--set", f"data.files=[{bad}]"]) == 2
    assert f"cannot read data file {bad}" in capsys.readouterr().err
    assert not out.exists()


def test_fingerprint_refuses_a_file_not_in_the_data_lists(tmp_path, monkeypatch, capsys):
    from components.cli import main

    monkeypatch.chdir(REPO_ROOT)
    other = tmp_path / "other.parquet"
    answer_only_sums(3).to_parquet(other)
    assert main(["fingerprint", str(other), str(tmp_path / "o.json")]) == 2
    assert f"{other} is in neither data.files nor data.eval_files" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_fingerprint_records_hash_size_and_rows(tmp_path):
    from components.data.fingerprint import fingerprint

    path = tmp_path / "t.jsonl"
    path.write_text('{"question": "1+1=", "answer": "2"}\n{"question": "2+2=", "answer": "4"}\n')
    record = fingerprint(path)
    assert record["rows"] == 2 and record["bytes"] == path.stat().st_size
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(record["file"]) == path
