"""verify trusts reports/eval only when it belongs to the current models and data, and registration is
idempotent per model.

The failure this guards against: after a normal run, `cli rl --set rl.lr=0.5 ...` rewrote models/rl with
a broken model, and `cli verify` promoted it to @champion on the previous model's evaluation results.
The tests share one tiny pipeline state evaluated by the real evaluate stage; each works on its own
copy of it, with its own sqlite MLflow store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import components.registry.versions as registry
from components.config import REPO_ROOT
from components.gate.promotion import verify_and_promote
from components.infra.provenance import EVAL_MANIFEST, ProvenanceError, hash_path
from components.stages.common import INIT_DIR
from components.stages.evaluate import run as run_evaluate
from tests.support.provenance import NAME, evaluated, pipeline, save_model  # noqa: F401  (fixtures)


def versions() -> list:
    """Every registered version in this test's own store, oldest first, with its aliases (search results
    do not carry them). The store is named explicitly: a refused verify never points MLflow at it."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    found = sorted(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))
    return [client.get_model_version(NAME, str(v)) for v in found]


def test_evaluate_records_the_hash_of_every_model_and_benchmark(pipeline):
    root, cfg = pipeline
    manifest = json.loads((root / cfg.eval.out_dir / EVAL_MANIFEST).read_text())
    assert manifest["models"] == {
        "untrained": {"path": str(INIT_DIR), "sha256": hash_path(INIT_DIR)},
        "sft": {"path": cfg.sft.out_dir, "sha256": hash_path(cfg.sft.out_dir)},
        "rl": {"path": cfg.rl.out_dir, "sha256": hash_path(cfg.rl.out_dir)},
    }
    eval_file = Path(cfg.data.out_dir) / "eval.parquet"
    assert manifest["benchmarks"] == {"chain_sum": {"path": str(eval_file), "sha256": hash_path(eval_file),
                                                    "limit": None}}


def test_verify_refuses_results_of_a_replaced_rl_model_and_registers_nothing(pipeline):
    root, cfg = pipeline
    evaluated = hash_path(cfg.rl.out_dir)
    save_model(cfg, 3, cfg.rl.out_dir)  # `cli rl` rewrote models/rl after evaluate ran
    current = hash_path(cfg.rl.out_dir)
    assert current != evaluated
    with pytest.raises(ProvenanceError) as err:
        verify_and_promote(cfg)
    message = str(err.value)
    assert "model 'rl'" in message and evaluated in message and current in message
    assert "rerun the evaluate stage" in message
    assert "model 'sft'" not in message  # only what differs is named
    assert versions() == []
    assert not (root / cfg.verify.metrics_file).exists() and not (root / cfg.verify.out_dir).exists()


def test_verify_refuses_when_the_benchmark_data_changed(pipeline):
    root, cfg = pipeline
    eval_file = Path(cfg.data.out_dir) / "eval.parquet"
    before = hash_path(eval_file)
    pd.read_parquet(eval_file).head(6).to_parquet(eval_file)
    with pytest.raises(ProvenanceError, match="benchmark 'chain_sum'") as err:
        verify_and_promote(cfg)
    assert before in str(err.value) and hash_path(eval_file) in str(err.value)
    assert "rerun the evaluate stage" in str(err.value)
    assert versions() == []


def test_verify_refuses_results_without_provenance(pipeline):
    root, cfg = pipeline
    (root / cfg.eval.out_dir / EVAL_MANIFEST).unlink()  # results of an evaluate that recorded nothing
    with pytest.raises(ProvenanceError, match="rerun the evaluate stage"):
        verify_and_promote(cfg)
    assert versions() == []


def test_after_rerunning_evaluate_the_new_model_is_judged_on_its_own_results(pipeline):
    root, cfg = pipeline
    save_model(cfg, 3, cfg.rl.out_dir)
    run_evaluate(cfg)
    summary = verify_and_promote(cfg)
    [version] = versions()
    assert summary["promoted"] and version.tags["model_hash"] == hash_path(cfg.rl.out_dir)
    assert version.tags["sft_model_hash"] == hash_path(cfg.sft.out_dir)


def test_verify_twice_on_the_same_model_registers_one_version(pipeline):
    root, cfg = pipeline
    first = verify_and_promote(cfg)
    second = verify_and_promote(cfg)
    [version] = versions()
    assert first["registered_version"] == second["registered_version"] == int(version.version)
    assert not first["reused_version"] and second["reused_version"]
    assert version.tags["model_hash"] == hash_path(cfg.rl.out_dir) == second["model_hash"]
    assert version.aliases == ["champion"] and version.tags["promotion"] == "promoted to @champion"
    assert "rl_vs_champion" not in second  # the champion is this very model: no comparison against itself


def test_a_crash_between_register_and_alias_is_completed_by_the_rerun(pipeline, monkeypatch):
    root, cfg = pipeline

    def crash(*args, **kwargs):
        raise RuntimeError("killed between register and set_alias")

    with monkeypatch.context() as m:
        m.setattr(registry, "set_alias", crash)
        with pytest.raises(RuntimeError, match="killed"):
            verify_and_promote(cfg)
    [version] = versions()
    assert version.tags["verdict"] == "passed" and version.tags["promotion"] == "pending"
    assert version.aliases == [] and not (root / cfg.verify.metrics_file).exists()

    summary = verify_and_promote(cfg)
    [version] = versions()  # no duplicate
    assert summary["promoted"] and summary["reused_version"] and summary["registered_version"] == int(version.version)
    assert version.aliases == ["champion"] and version.tags["promotion"] == "promoted to @champion"


def test_dvc_makes_verify_depend_on_what_it_reads():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    deps = set(stages["verify"]["deps"])
    # the data and models it reads; its code is covered package by package (tests/project/test_architecture.py)
    assert {"reports/eval", "models/rl", "models/sft", "data/prepared/eval.parquet", "data/benchmarks",
            "components/gate", "components/infra", "components/registry"} <= deps
    assert "components/infra" in stages["evaluate"]["deps"]


def test_folder_hash_is_content_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "sub").mkdir(parents=True)
        (root / "config.json").write_text("{}")
        (root / "sub" / "w.bin").write_bytes(b"\x00" * 3000)
    assert hash_path(a) == hash_path(b)  # where it lives does not matter
    (b / "sub" / "w.bin").write_bytes(b"\x00" * 2999 + b"\x01")
    assert hash_path(a) != hash_path(b)
    (b / "sub" / "w.bin").write_bytes(b"\x00" * 3000)
    (b / "sub" / "w.bin").rename(b / "sub" / "v.bin")
    assert hash_path(a) != hash_path(b)  # names are part of the content
    pointer = tmp_path / "init"
    pointer.mkdir()
    (pointer / "source.json").write_text(json.dumps({"name_or_path": "Qwen/Qwen2.5-0.5B"}))
    qwen = hash_path(pointer)
    (pointer / "source.json").write_text(json.dumps({"name_or_path": "Qwen/Qwen2.5-1.5B"}))
    assert hash_path(pointer) != qwen  # an HF pointer folder: the pointer is what is hashed
