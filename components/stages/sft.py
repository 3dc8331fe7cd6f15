"""Stage `sft`: the warm start. Writes the untrained model (models/init) and the SFT policy.

With sft.enabled=false nothing is trained: models/sft is written as the base model itself (the tiny
model's initial weights, or a pointer to model.name_or_path, as models/init), so the stage graph stays
the same and RL starts from the base model. Either way models/sft records the base it was built from
(components/model/lineage.py), which the rl stage checks against the configured model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from components.config import Config
from components.infra.atomic_io import atomic_dir
from components.infra.locks import locked_stage
from components.stages.common import INIT_DIR, POINTER_FILE, accelerator, read_split

log = logging.getLogger(__name__)

SKIPPED = "skipped (sft.enabled=false)"


@locked_stage("sft", lambda cfg: [INIT_DIR, cfg.sft.out_dir])
def run(cfg: Config) -> dict:
    import mlflow
    from accelerate.utils import set_seed

    from components.infra.run_records import log_split_inputs
    from components.infra.tracking import log_metrics, set_tags, stage_run
    from components.model.factory import count_parameters, training_memory
    from components.model.io import save_policy
    from components.model.lineage import write_lineage
    from components.sft.train import train_sft

    set_seed(cfg.seed)
    acc = accelerator(cfg)
    if not cfg.sft.enabled:
        return _start_from_base(cfg, acc.is_main_process)
    data = read_split(cfg, "sft")
    model, tokenizer = _untrained(cfg)
    with stage_run(cfg, "sft"):
        set_tags({"sft.status": "trained"})
        if acc.is_main_process:
            log_split_inputs(cfg, ["sft"], context="training", frames={"sft": data})
            with atomic_dir(INIT_DIR) as tmp:
                _save_untrained(cfg, model, tokenizer, tmp)
        log_metrics({"model/parameters": count_parameters(model)})
        log.info("sft: %d examples, model with %d parameters", len(data), count_parameters(model))
        model = training_memory(model, cfg.model)
        model, result = train_sft(model, tokenizer, data, cfg.sft, cfg.model.lora, cfg.seed, acc,
                                  chat_template=cfg.data.chat_template,
                                  chunk_tokens=cfg.model.lm_head_chunk_tokens, log_metrics=log_metrics)
        if acc.is_main_process:
            with atomic_dir(cfg.sft.out_dir) as tmp:
                save_policy(model, tokenizer, tmp)
                write_lineage(tmp, cfg.model, sft_trained=True)
            mlflow.log_metrics({"sft/seconds": result.seconds, "sft/steps": result.steps})
            mlflow.log_artifacts(cfg.sft.out_dir, "model")
    return {"seconds": result.seconds, "final_loss": result.final_loss}


def _start_from_base(cfg: Config, main_process: bool) -> dict:
    """sft.enabled=false: models/init and models/sft both hold the base model, untrained."""
    from components.infra.tracking import set_tags, stage_run
    from components.model.lineage import write_lineage

    model, tokenizer = _untrained(cfg)
    with stage_run(cfg, "sft"):
        set_tags({"sft.status": SKIPPED})
        if main_process:
            for folder in (INIT_DIR, Path(cfg.sft.out_dir)):
                with atomic_dir(folder) as tmp:
                    _save_untrained(cfg, model, tokenizer, tmp)
                    if folder != INIT_DIR:
                        write_lineage(tmp, cfg.model, sft_trained=False)
    log.info("sft: %s; RL starts from the base model %s", SKIPPED, cfg.model.name_or_path)
    return {"skipped": True}


def _untrained(cfg: Config):
    """(model, tokenizer) of the base model; with sft.enabled=false an HF model is only checked (one
    line when missing or unreachable), not loaded: its folders are pointers."""
    from components.model.factory import TINY, initial_policy
    from components.model.source import resolve

    if cfg.sft.enabled or cfg.model.name_or_path == TINY:
        return initial_policy(cfg.model, cfg.seed)
    resolve(cfg.model.name_or_path)
    return None, None


def _save_untrained(cfg: Config, model, tokenizer, folder: Path) -> None:
    """The tiny model's weights, or for an HF model a pointer to model.name_or_path (not a copy)."""
    from components.model.factory import TINY
    from components.model.io import save_policy

    if cfg.model.name_or_path == TINY:
        save_policy(model, tokenizer, folder)
    else:
        (folder / POINTER_FILE).write_text(json.dumps({"name_or_path": cfg.model.name_or_path}))
