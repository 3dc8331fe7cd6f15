"""The four pipeline stages. The ONE implementation of each: `dvc repro` runs them through
`python -m components.cli STAGE`, and the Prefect flow runs `dvc repro`, so both reach this code.

Every stage writes its outputs atomically (temporary folder, then rename) and logs a nested
MLflow run with its params, metrics and artifacts.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from components.config import Config
from components.io_utils import atomic_dir, atomic_write_json

log = logging.getLogger(__name__)

INIT_DIR = Path("models/init")
VALIDATION_DIR = Path("reports/validation")
POINTER_FILE = "source.json"  # models/init for a hub/local HF model: a pointer, not a copy


def _accelerator():
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _read_split(cfg: Config, split: str) -> pd.DataFrame:
    path = Path(cfg.data.out_dir) / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"prepared split not found: {path} (run the prepare stage first)")
    return pd.read_parquet(path)


def _prompt_budget(cfg: Config):
    """(count_tokens, max_prompt_tokens) for the configured model's tokenizer and context."""
    from components.model.factory import TINY, load_tokenizer
    from components.model.tokenizer import build_char_tokenizer

    completion = max(cfg.rl.max_completion_length, cfg.eval.max_completion_length)
    if cfg.model.name_or_path == TINY:
        tok, context = build_char_tokenizer(), cfg.model.tiny.max_position_embeddings
    else:
        from transformers import AutoConfig

        tok = load_tokenizer(cfg.model.name_or_path)
        context = int(getattr(AutoConfig.from_pretrained(cfg.model.name_or_path), "max_position_embeddings", 4096))
    return (lambda text: len(tok(text)["input_ids"])), context - completion


def run_prepare(cfg: Config) -> dict:
    import mlflow

    from components.data.prepare import prepare, reset_report
    from components.tracking import stage_run

    reset_report(VALIDATION_DIR)  # before anything can fail: a failed prepare never shows an old PASSED
    count_tokens, max_prompt_tokens = _prompt_budget(cfg)
    with stage_run(cfg, "prepare"):
        try:
            summary = prepare(cfg, count_tokens, max_prompt_tokens, VALIDATION_DIR)
        finally:
            if VALIDATION_DIR.exists():
                mlflow.log_artifacts(str(VALIDATION_DIR), "validation")
        flat = {f"data/{split}_rows": info["rows"] for split, info in summary.items() if isinstance(info, dict)
                and "rows" in info}
        mlflow.log_metrics(flat)
        mlflow.set_tags({f"data.{s}.hash": i["hash"] for s, i in summary.items() if isinstance(i, dict) and "hash" in i})
    return summary


def run_sft(cfg: Config) -> dict:
    import mlflow
    from accelerate.utils import set_seed

    from components.model.factory import TINY, count_parameters, initial_policy
    from components.sft import save_policy, train_sft
    from components.tracking import log_metrics, stage_run

    data = _read_split(cfg, "sft")
    set_seed(cfg.seed)
    accelerator = _accelerator()
    model, tokenizer = initial_policy(cfg.model, cfg.seed)
    with stage_run(cfg, "sft"):
        if accelerator.is_main_process:
            with atomic_dir(INIT_DIR) as tmp:
                if cfg.model.name_or_path == TINY:
                    save_policy(model, tokenizer, tmp)
                else:
                    (tmp / POINTER_FILE).write_text(json.dumps({"name_or_path": cfg.model.name_or_path}))
        log_metrics({"model/parameters": count_parameters(model)})
        log.info("sft: %d examples, model with %d parameters", len(data), count_parameters(model))
        model, result = train_sft(model, tokenizer, data, cfg.sft, cfg.model.lora, cfg.seed, accelerator,
                                  log_metrics=log_metrics)
        if accelerator.is_main_process:
            with atomic_dir(cfg.sft.out_dir) as tmp:
                save_policy(model, tokenizer, tmp)
            mlflow.log_metrics({"sft/seconds": result.seconds, "sft/steps": result.steps})
            mlflow.log_artifacts(cfg.sft.out_dir, "model")
    return {"seconds": result.seconds, "final_loss": result.final_loss}


def run_rl(cfg: Config) -> dict:
    import mlflow
    from accelerate.utils import set_seed

    from components.config import ConfigError
    from components.model.factory import context_length, load_policy
    from components.model.lora import maybe_wrap_lora
    from components.rl.checkpoint import folder_identity
    from components.rl.trainer import run_fingerprint, train_rl
    from components.sft import save_policy
    from components.tracking import log_metrics, set_tags, stage_run

    prompts = _read_split(cfg, "rl")
    set_seed(cfg.seed)
    accelerator = _accelerator()
    model, tokenizer = load_policy(cfg.sft.out_dir, cfg.model.dtype)
    # An HF model's context is only known now (config load checks the tiny model's).
    context = context_length(model)
    if cfg.rl.max_completion_length >= context:
        raise ConfigError(f"rl.max_completion_length ({cfg.rl.max_completion_length}) leaves no room for a prompt "
                          f"in the context of the model in {cfg.sft.out_dir} (max_position_embeddings = {context}); "
                          "it must be below that")
    model = maybe_wrap_lora(model, cfg.model.lora)
    # Checkpoints live under a folder named by the run's fingerprint (config, seed, data size,
    # process count, SFT weights): rerunning the same run after a crash resumes it, while a
    # changed param starts a fresh trajectory instead of mixing two.
    # The rollout engine, its log-prob handling and the reward shaping change the trajectory too.
    shaping = {"rollout": cfg.rollout.model_dump(exclude={"vllm"}),
               "reward": cfg.reward.model_dump(include={"correct_weight", "format_weight"})}
    identity = folder_identity(Path(cfg.sft.out_dir)) + json.dumps(shaping, sort_keys=True)
    fingerprint = run_fingerprint(cfg.rl, cfg.seed, len(prompts), accelerator.num_processes, identity)
    checkpoint_dir = Path(cfg.rl.checkpoint_dir) / fingerprint
    with stage_run(cfg, "rl"):
        set_tags({"rl.checkpoint_dir": str(checkpoint_dir)})
        model, result = train_rl(model, tokenizer, prompts, cfg.rl, cfg.seed, accelerator, log_metrics=log_metrics,
                                 checkpoint_dir=checkpoint_dir, resume=True, identity=identity,
                                 rollout=cfg.rollout, reward=cfg.reward, model_path=cfg.sft.out_dir,
                                 on_resume=_tag_resume)
        if accelerator.is_main_process:
            with atomic_dir(cfg.rl.out_dir) as tmp:
                save_policy(model, tokenizer, tmp)
            mlflow.log_metric("rl/seconds", result.seconds)
            mlflow.log_artifacts(cfg.rl.out_dir, "model")
    return {"seconds": result.seconds, "iterations": result.iterations}


def _tag_resume(iteration: int, run_id: str | None) -> None:
    """A resumed RL stage is a new MLflow run tagged with the run whose checkpoint it continues."""
    from components.tracking import set_tags

    log.info("rl: continuing at iteration %d from a checkpoint of MLflow run %s", iteration, run_id)
    set_tags({"rl.resumed_from_iteration": str(iteration), "rl.resumes_run_id": str(run_id)})


def model_dir(label: str, cfg: Config) -> Path:
    """The pipeline's folder of a model (for an un-fine-tuned HF model: the folder holding its pointer)."""
    return {"untrained": INIT_DIR, "sft": Path(cfg.sft.out_dir), "rl": Path(cfg.rl.out_dir)}[label]


def model_folder(label: str, cfg: Config) -> str:
    """The folder (or hub name, for an un-fine-tuned HF model) holding a pipeline model."""
    path = model_dir(label, cfg)
    pointer = path / POINTER_FILE
    return json.loads(pointer.read_text())["name_or_path"] if pointer.exists() else str(path)


def evaluate_folder(folder: str, cfg: Config, benchmarks: dict[str, pd.DataFrame], label: str, scorer=None):
    """{benchmark: (summary, per-problem table)} of the policy in `folder`."""
    from components.evaluate import evaluate_policy
    from components.model.factory import load_policy
    from components.rollout import make_engine

    model, tokenizer = load_policy(folder, cfg.model.dtype)
    engine = make_engine(cfg.rollout, model, tokenizer, folder, None, cfg.seed)
    out = {}
    for name, data in benchmarks.items():
        out[name] = evaluate_policy(engine, data, cfg.eval, cfg.seed, f"{label}/{name}", scorer)
    del engine, model
    return out


def load_benchmarks(cfg: Config) -> dict[str, pd.DataFrame]:
    from components.benchmarks import load_benchmark

    return {b.name: load_benchmark(b, cfg.data.out_dir) for b in cfg.eval.benchmarks}


def scoring_pool(cfg: Config):
    from components.scoring import ScoringPool

    r = cfg.reward
    return ScoringPool(r.workers, r.timeout_s)


def run_evaluate(cfg: Config) -> dict:
    """Every model on every benchmark: per-problem tables, a summary table, MLflow + DVC metrics."""
    import mlflow

    from components.evaluate import by_source
    from components.provenance import eval_manifest, write_eval_manifest
    from components.tracking import metric_key, stage_run

    benchmarks = load_benchmarks(cfg)  # a bad benchmark file fails before any generation
    out_dir = Path(cfg.eval.out_dir)
    results: dict[str, dict] = {}
    rows = []
    # The content hashes of every model folder and benchmark file scored, written with the tables
    # in the same atomic folder: verify refuses results that do not match the current models.
    manifest = eval_manifest({label: model_dir(label, cfg) for label in ("untrained", "sft", "rl")},
                             cfg.eval.benchmarks, cfg.data.out_dir)
    with stage_run(cfg, "evaluate"), atomic_dir(out_dir) as tmp, scoring_pool(cfg) as scorer:
        start = time.time()
        write_eval_manifest(tmp, manifest)
        for label in ("untrained", "sft", "rl"):
            results[label] = {}
            for bench, (summary, table) in evaluate_folder(model_folder(label, cfg), cfg, benchmarks, label,
                                                           scorer).items():
                (tmp / label).mkdir(exist_ok=True)
                table.to_parquet(tmp / label / f"{bench}.parquet", index=False)
                results[label][bench] = summary
                rows.append({"model": label, "benchmark": bench, "data_source": "all", **summary})
                sources = by_source(table, cfg.eval.num_samples)
                if len(sources) > 1:
                    rows.extend({"model": label, "benchmark": bench, "data_source": src, **m}
                                for src, m in sources.items())
                mlflow.log_metrics({metric_key(f"eval/{label}/{bench}/{k}"): float(v) for k, v in summary.items()})
        pd.DataFrame(rows).to_csv(tmp / "summary.csv", index=False)
        mlflow.log_metric("eval/seconds", time.time() - start)
        mlflow.log_artifacts(str(tmp), "eval")
    atomic_write_json(cfg.eval.metrics_file, results)
    return results


def run_verify(cfg: Config) -> dict:
    """The promotion gate: paired tests of the RL model, registration, and the champion alias."""
    from components.promotion import verify_and_promote

    return verify_and_promote(cfg)


STAGES = {"prepare": run_prepare, "sft": run_sft, "rl": run_rl, "evaluate": run_evaluate, "verify": run_verify}
