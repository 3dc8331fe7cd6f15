"""Hugging Face TRL's side of benchmarks/vs_trl.py, one run per process (in .venv-trl).

TRL 1.16's GRPOTrainer with a GRPOConfig that mirrors the project's rl settings (vs_trl.py maps them,
`trl_settings`), rewarded by the project's own verifier (components.rl.rewards.score_batch through
the scoring pool), on the prompts as the project renders them. Each optimizer step is one iteration:
it is timed by a TrainerCallback (on_step_begin .. on_step_end), its parts by wrapping
GRPOTrainer._generate (tokenize, generate, decode), GRPOTrainer.compute_loss (the loss forward of a
micro-batch) and accelerator.backward. Started by vs_trl.py with --job.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_trl_common import BudgetClock, PartTimers, worker_main  # noqa: E402

# GRPOConfig fields read back after its __post_init__, to show what TRL really ran with.
REPORTED_FIELDS = (
    "loss_type", "scale_rewards", "beta", "use_bias_correction_kl", "epsilon", "epsilon_high", "num_generations",
    "num_iterations", "generation_batch_size", "steps_per_generation", "per_device_train_batch_size",
    "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "optim", "adam_beta1",
    "adam_beta2", "adam_epsilon", "weight_decay", "max_grad_norm", "temperature", "top_p", "top_k", "min_p",
    "repetition_penalty", "max_completion_length", "mask_truncated_completions", "importance_sampling_level",
    "top_entropy_quantile", "entropy_coef", "bf16", "fp16", "use_cpu", "activation_checkpointing", "use_vllm",
    "shuffle_dataset", "seed", "save_strategy", "report_to", "multi_objective_aggregation", "pad_to_multiple_of",
)


def grpo_config(job: dict[str, Any], max_steps: int):
    """TRL's GRPOConfig for the project's settings (job["settings"], mapped by vs_trl.trl_settings)."""
    from trl import GRPOConfig

    s = dict(job["settings"])
    return GRPOConfig(output_dir=str(Path(job["out_dir"]) / "trl-output"), max_steps=max_steps, **s)


def project_verifier(reward: dict[str, Any]):
    """A TRL reward function that is the project's scoring path: the scoring pool, then the configured
    correct/format weights (components.rl.rewards.score_batch). TRL passes the dataset's answer and
    source columns as keyword lists aligned with the completions."""
    from components.config import RewardConfig
    from components.reward.pool import pool_for
    from components.rl.rewards import score_batch

    cfg = RewardConfig(**reward)
    scorer = pool_for(cfg)

    def project_verifier(completions: list[str], answer: list[str], source: list[str], **_: Any) -> list[float]:
        return score_batch(SimpleNamespace(texts=list(completions)), list(source), list(answer), scorer, cfg).tolist()

    return project_verifier, scorer


def trainer_class():
    """GRPOTrainer, tokenizing plain-text prompts without special tokens: the prompts are rendered
    (they carry their BOS or chat template) and the project tokenizes them so (see ADJUSTMENTS)."""
    from trl import GRPOTrainer

    class RenderedPromptGRPOTrainer(GRPOTrainer):
        def _tokenize_prompts(self, prompts: list):
            if isinstance(prompts[0], str):
                return self.processing_class(text=prompts, add_special_tokens=False)["input_ids"], None, {}
            return super()._tokenize_prompts(prompts)

    return RenderedPromptGRPOTrainer


def step_callback(timers: PartTimers, clock: BudgetClock, budget_s: float | None):
    """Times every optimizer step and its parts; stops training once the budget is spent."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.parts: list[dict[str, float]] = []
            self.rewards: list[float] = []
            self.lengths: list[float] = []
            self.threads = 0
            self.t0 = 0.0
            self.elapsed = 0.0  # training seconds when the last step ended

        def on_step_begin(self, args, state, control, **kwargs):
            clock.start()
            self.threads = torch.get_num_threads()
            timers.take()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.t0)
            self.parts.append(timers.take())
            self.elapsed = clock.elapsed()
            if budget_s is not None and clock.elapsed() >= budget_s:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.rewards.append(float(logs["reward"]))
                self.lengths.append(float(logs["completions/mean_length"]))

    return StepClock()


def build(job: dict[str, Any], max_steps: int, budget_s: float | None):
    import pandas as pd
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback

    from components.model.factory import load_policy

    torch.set_num_threads(job["threads"])
    model, tok = load_policy(job["policy"], "float32")
    data = Dataset.from_pandas(pd.read_parquet(job["prompts"])[["prompt", "answer", "source"]], preserve_index=False)
    reward_fn, scorer = project_verifier(job["reward"])
    timers, clock = PartTimers(), BudgetClock()
    callback = step_callback(timers, clock, budget_s)
    trainer = trainer_class()(model=model, reward_funcs=reward_fn, args=grpo_config(job, max_steps),
                              train_dataset=data, processing_class=tok, callbacks=[callback])
    for noisy in (PrinterCallback, ProgressCallback):  # no per-step printing
        trainer.remove_callback(noisy)
    timers.wrap(trainer, "_generate", "generate")
    timers.wrap(trainer, "compute_loss", "loss_forward")
    timers.wrap(trainer.accelerator, "backward", "backward")
    return trainer, tok, callback, scorer


def check_tokenization(trainer, tok, prompts: list[str]) -> None:
    """TRL must feed the model the very ids the project's engine does (rendered, no special tokens)."""
    ours = tok(prompts, add_special_tokens=False)["input_ids"]
    theirs, _, _ = trainer._tokenize_prompts(prompts)
    if [list(x) for x in theirs] != [list(x) for x in ours]:
        raise RuntimeError(f"TRL tokenizes prompts differently from the project: {theirs[:2]} vs {ours[:2]}")


def run(job: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    import torch
    import transformers
    import trl
    import accelerate

    speed = job["mode"] == "speed"
    max_steps = job["warmup"] + job["iterations"] if speed else 10**7
    t0 = time.perf_counter()
    trainer, tok, callback, scorer = build(job, max_steps, None if speed else job["budget_s"])
    check_tokenization(trainer, tok, pd.read_parquet(job["prompts"])["prompt"].head(8).tolist())
    load_s = time.perf_counter() - t0
    try:
        trainer.train()
    finally:
        scorer.close()
    result: dict[str, Any] = {"load_s": load_s, "torch_threads": callback.threads, "reward_mean": callback.rewards,
                              "mean_length": callback.lengths,
                              "grpo_config": {k: _plain(getattr(trainer.args, k)) for k in REPORTED_FIELDS},
                              "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                                           "accelerate": accelerate.__version__, "torch": torch.__version__}}
    if speed:
        timed = slice(job["warmup"], None)
        result["iter_seconds"] = callback.seconds[timed]
        result["parts"] = {name: [p[name] for p in callback.parts[timed]] for name in callback.parts[0]}
    else:
        from components.model.io import save_policy

        final = Path(job["out_dir"]) / "final"
        save_policy(trainer.accelerator.unwrap_model(trainer.model), tok, final)
        result["snapshots"] = [{"fraction": 1.0, "elapsed_s": callback.elapsed, "iterations": len(callback.seconds),
                                "folder": str(final)}]
        result["iterations"] = len(callback.seconds)
    return result


def _plain(value: Any) -> Any:
    """A config value as JSON holds it (enums and lists of them as their strings)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(getattr(value, "value", value))


if __name__ == "__main__":
    worker_main(run)
