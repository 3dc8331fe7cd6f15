"""Stage `sft`: the warm start. Writes the untrained model (models/init) and the SFT policy."""

from __future__ import annotations

import json
import logging

from components.config import Config
from components.infra.atomic_io import atomic_dir
from components.infra.locks import locked_stage
from components.stages.common import INIT_DIR, POINTER_FILE, accelerator, read_split

log = logging.getLogger(__name__)


@locked_stage("sft", lambda cfg: [INIT_DIR, cfg.sft.out_dir])
def run(cfg: Config) -> dict:
    import mlflow
    from accelerate.utils import set_seed

    from components.infra.tracking import log_metrics, stage_run
    from components.model.factory import TINY, count_parameters, initial_policy, training_memory
    from components.model.io import save_policy
    from components.sft.train import train_sft

    data = read_split(cfg, "sft")
    set_seed(cfg.seed)
    acc = accelerator(cfg)
    model, tokenizer = initial_policy(cfg.model, cfg.seed)
    with stage_run(cfg, "sft"):
        if acc.is_main_process:
            with atomic_dir(INIT_DIR) as tmp:
                if cfg.model.name_or_path == TINY:
                    save_policy(model, tokenizer, tmp)
                else:
                    (tmp / POINTER_FILE).write_text(json.dumps({"name_or_path": cfg.model.name_or_path}))
        log_metrics({"model/parameters": count_parameters(model)})
        log.info("sft: %d examples, model with %d parameters", len(data), count_parameters(model))
        model = training_memory(model, cfg.model)
        model, result = train_sft(model, tokenizer, data, cfg.sft, cfg.model.lora, cfg.seed, acc,
                                  chat_template=cfg.data.chat_template,
                                  chunk_tokens=cfg.model.lm_head_chunk_tokens, log_metrics=log_metrics)
        if acc.is_main_process:
            with atomic_dir(cfg.sft.out_dir) as tmp:
                save_policy(model, tokenizer, tmp)
            mlflow.log_metrics({"sft/seconds": result.seconds, "sft/steps": result.steps})
            mlflow.log_artifacts(cfg.sft.out_dir, "model")
    return {"seconds": result.seconds, "final_loss": result.final_loss}
