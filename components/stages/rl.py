"""Stage `rl`: the base algorithm (+ PIPO) from the SFT policy, with exact resume from checkpoints.

It starts from models/sft: the SFT policy, or with sft.enabled=false the base model itself (the sft stage
writes it there); a models/sft built from another base than model.name_or_path is refused, naming both.
With rl.guard on, models/rl is the guard's output (docs/guard.md): the final policy when its last probe check
shows no drop, else the best verified checkpoint. Which one and why are in its lineage file (`rl_guard`) and
the run's tags rl.guard.best_iteration, rl.guard.output_iteration, rl.guard.reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from components.config import Config, ConfigError
from components.infra.atomic_io import atomic_dir
from components.infra.locks import locked_stage, output_locks
from components.stages.common import RL_PLOTS_DIR, accelerator, model_folder, read_split

log = logging.getLogger(__name__)


@locked_stage("rl", lambda cfg: [cfg.rl.out_dir, RL_PLOTS_DIR])
def run(cfg: Config) -> dict:
    import mlflow
    from accelerate.utils import set_seed

    from components.infra.run_plots import rl_curves
    from components.infra.run_records import log_figures, log_split_inputs
    from components.infra.tracking import log_metrics, set_tags, stage_run
    from components.model.chat import rendered_frame
    from components.model.factory import context_length, load_policy, training_memory
    from components.model.io import save_policy
    from components.model.lineage import check_built_from, copy_lineage
    from components.model.lora import maybe_wrap_lora
    from components.rl.checkpoint import folder_identity, run_fingerprint
    from components.rl.curves import write_curves_csv
    from components.rl.trainer import train_rl

    lineage = check_built_from(cfg.sft.out_dir, cfg.model)  # before anything is loaded or written
    start = "sft" if lineage["sft_trained"] else "base model (sft.enabled=false)"
    start_folder = model_folder("sft", cfg)  # an HF base model's models/sft is a pointer to it
    split = prompts = read_split(cfg, "rl")
    set_seed(cfg.seed)
    acc = accelerator(cfg)
    model, tokenizer = load_policy(start_folder, cfg.model.dtype, cfg.model.trust_remote_code)
    # An HF model's context is only known now (config load checks the tiny model's).
    context = context_length(model)
    if cfg.rl.max_completion_length >= context:
        raise ConfigError(f"rl.max_completion_length ({cfg.rl.max_completion_length}) leaves no room for a prompt "
                          f"in the context of the model in {start_folder} (max_position_embeddings = {context}); "
                          "it must be below that")
    # The trainer samples from `prompt`: the text as the model reads it (chat template or plain).
    prompts = rendered_frame(tokenizer, prompts, cfg.data.chat_template)
    model = maybe_wrap_lora(training_memory(model, cfg.model), cfg.model.lora)
    # Checkpoints live under a folder named by the run's fingerprint (config, seed, data size,
    # process count, SFT weights): rerunning the same run after a crash resumes it, while a
    # changed param starts a fresh trajectory instead of mixing two.
    # The rollout engine, its log-prob handling and the reward shaping change the trajectory too.
    shaping = {"rollout": cfg.rollout.model_dump(exclude={"vllm"}), "chat_template": cfg.data.chat_template,
               "reward": cfg.reward.model_dump(include={"correct_weight", "format_weight"})}
    identity = folder_identity(Path(cfg.sft.out_dir)) + json.dumps(shaping, sort_keys=True)
    fingerprint = run_fingerprint(cfg.rl, cfg.seed, len(prompts), acc.num_processes, identity)
    checkpoint_dir = Path(cfg.rl.checkpoint_dir) / fingerprint
    # The fingerprint leaves out rl.out_dir, so two runs differing only there would share checkpoints.
    ckpt_lock = output_locks("rl", [checkpoint_dir]) if acc.is_main_process else contextlib.nullcontext()
    with ckpt_lock, stage_run(cfg, "rl"):
        set_tags({"rl.checkpoint_dir": str(checkpoint_dir), "rl.start_model": start,
                  "rl.base_model": str(lineage["base"]["name_or_path"])})
        if acc.is_main_process:
            log_split_inputs(cfg, ["rl"], context="training", frames={"rl": split})
        model, result = train_rl(model, tokenizer, prompts, cfg.rl, cfg.seed, acc, rollout=cfg.rollout,
                                 reward=cfg.reward, model_cfg=cfg.model, log_metrics=log_metrics,
                                 checkpoint_dir=checkpoint_dir, resume=True, fingerprint=fingerprint,
                                 model_path=start_folder,
                                 on_resume=_tag_resume)
        if result.guard:
            set_tags({"rl.guard.best_iteration": str(result.guard["best_iteration"]),
                      "rl.guard.output_iteration": str(result.guard["output_iteration"]),
                      "rl.guard.reason": result.guard["reason"]})
            log.info("rl: guard: the output is the %s", result.guard["reason"])
        if acc.is_main_process:
            with atomic_dir(cfg.rl.out_dir) as tmp:
                save_policy(model, tokenizer, tmp)
                copy_lineage({**lineage, **({"rl_guard": result.guard} if result.guard else {})}, tmp,
                             cfg.sft.out_dir)
            mlflow.log_metric("rl/seconds", result.seconds)
            mlflow.log_artifacts(cfg.rl.out_dir, "model")
            curve = result.curve or result.history  # a run from a checkpoint without curves: what it ran
            log_figures(rl_curves(curve, cfg.rl.iterations - len(curve)))
            with atomic_dir(RL_PLOTS_DIR) as tmp:  # DVC's plots (dvc.yaml `plots:`)
                write_curves_csv(result.curve, Path(tmp) / "curves.csv")
    return {"seconds": result.seconds, "iterations": result.iterations}


def _tag_resume(iteration: int, run_id: str | None) -> None:
    """A resumed RL stage is a new MLflow run tagged with the run whose checkpoint it continues."""
    from components.infra.tracking import set_tags

    log.info("rl: continuing at iteration %d from a checkpoint of MLflow run %s", iteration, run_id)
    set_tags({"rl.resumed_from_iteration": str(iteration), "rl.resumes_run_id": str(run_id)})
