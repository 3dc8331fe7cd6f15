"""Hostile data against data validation: each case is a reported hole, now a named validation failure.

Null prompts and sources, a repeated prompt with two answers, eval leaks that differ only in
whitespace, a 10 MB prompt (rejected by bytes before the tokenizer sees it), benchmark files
with binary or missing prompts, and training on a benchmark that is evaluated (the GPU preset did).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from components.eval.benchmarks import BenchmarkError, load_benchmark
from components.config import BenchmarkConfig, TaskConfig, load_config
from components.data.arithmetic import generate_splits
from components.data.ingest import load_files, load_source
from components.data.prepare import DataValidationError, prepare
from components.data.validate import BYTES_PER_TOKEN, validate_splits

ROOT = Path(__file__).resolve().parents[2]


def chars(prompt, messages=None):
    """A token counter of one token per prompt character (data validation also hands it a chat row's messages)."""
    return len(prompt)


TASK = TaskConfig(name="chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=2)


def _verl_rows(n: int) -> list[dict]:
    """n distinct, valid verl rows 'a+b=' with a worked (boxed) ground truth."""
    return [{"data_source": "math", "prompt": [{"role": "user", "content": f"{i}+{i + 1}="}],
             "reward_model": {"ground_truth": f"{i}+{i + 1} = \\boxed{{{2 * i + 1}}}"}} for i in range(n)]


def _write(tmp_path: Path, rows: list[dict], name: str = "bad") -> Path:
    path = tmp_path / f"{name}.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def _cfg(path: Path, out: Path, *extra: str):
    return load_config(overrides=["data.source=verl", f"data.files=[{path}]", "data.num_eval=4", "data.num_rl=100",
                                  "data.num_sft=5", f"data.out_dir={out}", *extra])


def _prepare_fails(tmp_path: Path, rows: list[dict]) -> str:
    out = tmp_path / "prepared"
    with pytest.raises(DataValidationError) as err:
        prepare(_cfg(_write(tmp_path, rows), out), chars, 30, tmp_path / "reports")
    assert not out.exists()
    return str(err.value)


def _failed(report) -> dict[str, list[str]]:
    return {f"{c.split}:{c.description}": c.failing_ids for c in report.failures}


def test_null_prompt_is_a_validation_failure_naming_the_row(tmp_path):
    rows = _verl_rows(20)
    rows[3]["prompt"] = None  # was: TypeError 'NoneType' object is not iterable, inside ingest
    rows[7]["prompt"] = [{"role": "user", "content": None}]  # was: the prompt 'None'
    message = _prepare_fails(tmp_path, rows)
    assert "prompt not null" in message
    assert "bad-000003" in message and "bad-000007" in message
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    failing = {i.removesuffix("-sft") for c in report["checks"] if c["description"] == "prompt not null"
               for i in c["failing_ids"]}  # an sft row is a copy of a source row, named with -sft
    assert failing == {"bad-000003", "bad-000007"}


def test_null_data_source_is_a_validation_failure_not_source_nan(tmp_path):
    rows = _verl_rows(20)
    rows[5]["data_source"] = None
    rows[6]["data_source"] = float("nan")
    loaded = load_files([str(_write(tmp_path, rows))], "verl")
    assert loaded["source"].iloc[[5, 6]].isna().all() and loaded["source"].notna().sum() == 18
    assert not {"nan", "None"} & set(loaded["source"].dropna())
    message = _prepare_fails(tmp_path, rows)
    assert "source not null" in message and "bad-000005" in message and "bad-000006" in message


def test_repeated_prompt_with_conflicting_answers_fails_naming_both_rows(tmp_path):
    rows = _verl_rows(20)
    rows[12]["prompt"] = [{"role": "user", "content": "2+3="}]  # row 2 asks the same, answer 5
    rows[12]["reward_model"] = {"ground_truth": "2+3 = \\boxed{6}"}
    rows[15]["prompt"] = [{"role": "user", "content": " 4 + 5= "}]  # row 4 up to spaces, same answer
    rows[15]["reward_model"] = {"ground_truth": "\\boxed{9}"}
    message = _prepare_fails(tmp_path, rows)
    line = next(ln for ln in message.splitlines() if "a repeated prompt has one answer" in ln)
    assert "bad-000002" in line and "bad-000012" in line
    # a repeat with the same answer is no conflict: deduplicated (whitespace ignored), one row kept
    assert "bad-000004" not in line and "bad-000015" not in line
    cfg = _cfg(_write(tmp_path, _verl_rows(20) + [rows[15]], "dup"), tmp_path / "o")
    splits = load_source(cfg.data, cfg.seed)
    prompts = pd.concat([splits["rl"], splits["eval"]])["prompt"]
    assert len(prompts) == 20 and prompts.str.replace(" ", "").eq("4+5=").sum() == 1


def test_eval_leak_after_whitespace_normalisation_fails_validation():
    splits = generate_splits(TASK, num_sft=6, num_rl=12, num_eval=6, seed=0)
    rl, ev = splits["rl"], splits["eval"]
    rl.loc[0, ["prompt", "answer"]] = [ev.loc[1, "prompt"] + " ", ev.loc[1, "answer"]]  # "1+5= " vs "1+5="
    rl.loc[3, ["prompt", "answer"]] = [" ".join(ev.loc[4, "prompt"]), ev.loc[4, "answer"]]  # "1 + 6 =" vs "1+6="
    report = validate_splits(splits, chars, 30)
    assert _failed(report) == {"eval:eval prompt not in sft or rl (whitespace ignored)":
                               ["chain_sum-eval-000001", "chain_sum-eval-000004"]}


def test_eval_files_decontaminate_training_rows_up_to_whitespace(tmp_path):
    train = _write(tmp_path, _verl_rows(20))
    spaced = _verl_rows(2)
    spaced[0]["prompt"] = [{"role": "user", "content": "0 + 1 = "}]
    spaced[1]["prompt"] = [{"role": "user", "content": "\t1+2=\n"}]
    cfg = _cfg(train, tmp_path / "out", f"data.eval_files=[{_write(tmp_path, spaced, 'evals')}]")
    splits = load_source(cfg.data, cfg.seed)
    train_prompts = set(splits["rl"]["prompt"]) | set(splits["sft"]["prompt"])
    assert len(splits["rl"]) == 18 and not {"0+1=", "1+2="} & train_prompts


@pytest.mark.slow
def test_ten_megabyte_prompt_rejected_by_bytes_before_tokenizing(tmp_path):
    """The real prepare path (the stage's own tokenizer and budget) in a fresh process: the 10 MB
    prompt is refused by the byte bound, and the process never grows past 1.5 GB (it peaked at
    4.7 GB in the tokenizer before the bound existed)."""
    path = tmp_path / "big.jsonl"
    rows = [{"question": f"{i}+{i + 1}=", "answer": f"#### {2 * i + 1}"} for i in range(20)]  # worked: SFT rows
    rows[9] = {"question": "1+" * (5 * 1024 * 1024) + "1=", "answer": "19"}  # 10 MB, in rl only
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    script = textwrap.dedent(f"""
        import json, resource
        from components.config import load_config
        from components.data.prepare import DataValidationError, prepare
        from components.stages.prepare import prompt_budget

        cfg = load_config(overrides=["data.source=hf_local", "data.files=[{path}]", "data.num_eval=4",
                                     "data.num_rl=100", "data.out_dir={tmp_path / 'out'}"])
        count_tokens, max_prompt_tokens = prompt_budget(cfg)
        try:
            prepare(cfg, count_tokens, max_prompt_tokens, {str(tmp_path / 'reports')!r})
            message = None
        except DataValidationError as exc:
            message = str(exc)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"message": message, "peak_mb": peak_mb, "max_prompt_tokens": max_prompt_tokens}}))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    limit = result["max_prompt_tokens"] * BYTES_PER_TOKEN
    print(f"peak RSS {result['peak_mb']:.0f} MB; byte bound {limit}")
    assert result["message"] is not None, "the 10 MB prompt was accepted"
    lines = result["message"].splitlines()
    line = next(ln for ln in lines if "bytes" in ln)
    assert f"prompt 1..{limit} bytes (checked before tokenizing)" in line and '"big-000009"' in line
    assert not any("tokens" in ln and "big-000009" in ln for ln in lines)
    assert result["peak_mb"] < 1536
    assert not (tmp_path / "out").exists()


def _bench(tmp_path: Path, name: str, rows: list[dict]) -> BenchmarkConfig:
    return BenchmarkConfig(name=name, file=str(_write(tmp_path, rows, name)))


def test_benchmark_with_binary_and_missing_prompts_is_refused_naming_rows(tmp_path):
    # a binary prompt column loaded as null prompts, which evaluation then scored on nothing
    binary = _bench(tmp_path, "binary", [{"question": b"\x00\xff\xfe", "answer": "1"},
                                         {"question": b"\x89PNG\r\n\x1a\n", "answer": "2"}])
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(binary, tmp_path)
    message = str(err.value)
    assert "benchmark 'binary'" in message and "binary.parquet" in message
    assert "binary-000000" in message and "binary-000001" in message and "prompt not null" in message
    rows = [{"data_source": "math", "prompt": [{"role": "user", "content": f"What is {i}+1?"}],
             "reward_model": {"ground_truth": str(i + 1)}} for i in range(6)]
    rows[2]["prompt"] = None
    rows[4]["reward_model"] = {"ground_truth": None}
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(_bench(tmp_path, "hostile", rows), tmp_path)
    message = str(err.value)
    assert "benchmark 'hostile'" in message and "hostile.parquet" in message
    prompt_line = next(ln for ln in message.splitlines() if "prompt not null" in ln)
    assert "hostile-000002" in prompt_line and "hostile-000001" not in prompt_line
    answer_line = next(ln for ln in message.splitlines() if "answer not null" in ln)
    assert "hostile-000004" in answer_line


def test_benchmark_unparseable_answer_oversized_prompt_and_conflicts_are_refused(tmp_path):
    rows = [{"question": f"What is {i}+1?", "answer": str(i + 1)} for i in range(6)]
    rows[1]["answer"] = r"\frac{1}{"  # the verifier cannot use it
    rows[3]["question"] = "x" * 2_000_000  # over 1 MiB: refused before any tokenizer
    rows[5]["question"] = rows[0]["question"]  # same problem, another answer
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(_bench(tmp_path, "odd", rows), tmp_path)
    lines = str(err.value).splitlines()
    assert "odd.parquet" in lines[0]
    assert "odd-000001" in next(ln for ln in lines if "answer parseable by the verifier" in ln)
    assert "odd-000003" in next(ln for ln in lines if "bytes" in ln)
    conflict = next(ln for ln in lines if "a repeated prompt has one answer" in ln)
    assert "odd-000000" in conflict and "odd-000005" in conflict
    # repaired, it loads; the byte bound follows the token budget it is given
    rows[1]["answer"], rows[3]["question"], rows[5]["question"] = "2", "What is 3+1?" + " " * 200, "What is 5+1?"
    ok = _bench(tmp_path, "ok", rows)
    assert len(load_benchmark(ok, tmp_path)) == 6
    with pytest.raises(BenchmarkError, match=r"prompt 1\.\.64 bytes.*ok-000003"):
        load_benchmark(ok, tmp_path, max_prompt_tokens=2)


def _gpu_cfg(out: Path, *data: str):
    """presets/gpu.yaml as it loads, with the tiny model (nothing to download) given a context that
    fits the preset's completion lengths, and the data lines a test needs."""
    return load_config(presets=[ROOT / "presets" / "gpu.yaml"], overrides=[
        "model.name_or_path=tiny", "model.tiny.max_position_embeddings=8192", f"data.out_dir={out}", *data])


def _benchmark_checks(reports: Path) -> dict[str, dict]:
    report = json.loads((reports / "report.json").read_text())
    return {f"{c['split']}:{c['description']}": c for c in report["checks"] if "eval benchmark" in c["description"]}


def test_gpu_preset_training_on_the_evaluated_math500_is_refused_naming_it(tmp_path, monkeypatch):
    """The GPU preset trained on data/benchmarks/math500.parquet and evaluated on the same file. Its data
    lines as they were (num_eval lowered: that 500-row file could not fill the 500 eval rows asked for)."""
    monkeypatch.chdir(ROOT)  # the preset's benchmark paths are relative, as the stages read them
    out, reports = tmp_path / "prepared", tmp_path / "reports"
    cfg = _gpu_cfg(out, "data.source=verl", "data.files=[data/benchmarks/math500.parquet]", "data.num_eval=50")
    with pytest.raises(DataValidationError) as err:
        prepare(cfg, chars, 4096, reports)
    assert not out.exists()  # refused before any split was written
    leaks = [ln for ln in str(err.value).splitlines() if "eval benchmark" in ln]
    assert len(leaks) == 2 and all("eval benchmark math500" in ln and ": 450 rows" in ln for ln in leaks)
    checks = _benchmark_checks(reports)
    failed = {k for k, c in checks.items() if not c["success"]}
    assert failed == {"sft:prompt not in eval benchmark math500 (whitespace ignored)",
                      "rl:prompt not in eval benchmark math500 (whitespace ignored)"}
    assert len(checks) == 6  # aime25 and amc23 were checked too, and passed
    assert all(i.startswith("math500-") for c in checks.values() for i in c["failing_ids"])


def test_gpu_preset_with_disjoint_training_data_passes_the_benchmark_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out, reports = tmp_path / "prepared", tmp_path / "reports"
    cfg = _gpu_cfg(out, "data.source=verl", f"data.files=[{_write(tmp_path, _verl_rows(20), 'train')}]",
                   "data.num_eval=4")
    assert [b.name for b in cfg.eval.benchmarks] == ["math500", "aime25", "amc23"]
    summary = prepare(cfg, chars, 4096, reports)
    assert summary["rl"]["rows"] == 16 and sorted(p.name for p in out.iterdir()) == [
        ".pipo-output", "eval.parquet", "rl.parquet", "sft.parquet"]  # marked: the pipeline's, outside the repository
    checks = _benchmark_checks(reports)
    assert len(checks) == 6 and all(c["success"] for c in checks.values())


def test_benchmark_prompt_in_training_up_to_whitespace_names_its_benchmark(tmp_path, monkeypatch):
    """Compared by data validation's prompt key: an AIME25 prompt with its spaces changed still leaks, and
    the failure names aime25 (and amc23 for the other row), not the benchmarks that hold neither."""
    monkeypatch.chdir(ROOT)
    aime = load_files(["data/benchmarks/aime25.parquet"], None).iloc[3]
    amc = load_files(["data/benchmarks/amc23.parquet"], None).iloc[5]
    rows = _verl_rows(20)
    for i, (bench, prompt) in [(7, (aime, "  " + aime["prompt"].replace(" ", "\n"))), (11, (amc, amc["prompt"]))]:
        rows[i] = {"data_source": "math", "prompt": [{"role": "user", "content": prompt}],
                   "reward_model": {"ground_truth": bench["answer"]}}
    evals = _write(tmp_path, _verl_rows(24)[20:], "heldout")  # all 20 training rows go to rl
    cfg = _gpu_cfg(tmp_path / "prepared", "data.source=verl", f"data.files=[{_write(tmp_path, rows, 'train')}]",
                   f"data.eval_files=[{evals}]")
    with pytest.raises(DataValidationError) as err:
        prepare(cfg, chars, 4096, tmp_path / "reports")
    leaks = {ln.split("eval benchmark ")[1].split(" ")[0]: ln for ln in str(err.value).splitlines()
             if "eval benchmark" in ln}
    assert set(leaks) == {"aime25", "amc23"}
    assert '["train-000007"]' in leaks["aime25"] and '["train-000011"]' in leaks["amc23"]
