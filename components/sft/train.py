"""SFT warm start: next-token loss on worked solutions, prompt tokens masked out; each batch is one
optimizer step in token-budget micro-batches (components/sft/step.py, sft.max_tokens_per_micro_batch).

The learning rate warms up then anneals (cosine) to `min_lr`: measured here, RL's apparent gain
over an SFT checkpoint trained at a constant high lr vanished once SFT was annealed, so the warm
start is trained to convergence before RL is asked to improve on it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch.utils.data import DataLoader

from components.config import SFTConfig
from components.data import messages_column
from components.infra.progress import ProgressReporter
from components.model import chat
from components.model.lora import maybe_wrap_lora
from components.sft.step import Example, SFTStep

log = logging.getLogger(__name__)


@dataclass
class SFTResult:
    steps: int
    final_loss: float
    seconds: float


def encode_examples(tokenizer, rows: pd.DataFrame, model, mode: str) -> list[Example]:
    """(input_ids, labels) per row of rows[prompt, messages, solution]: the prompt as the model reads
    it (data.chat_template `mode`), then the assistant's turn, loss on that turn only
    (components.model.chat.sft_example); the turn ends at any of the model's stop ids."""
    stop_ids = chat.stop_token_ids(model, tokenizer)
    return [chat.sft_example(tokenizer, prompt, chat.load_messages(messages), solution, mode, stop_ids)
            for prompt, messages, solution in zip(rows["prompt"], messages_column(rows), rows["solution"])]


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """lr multiplier: linear warmup to 1, then cosine down to min_ratio at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_sft(
    model,
    tokenizer,
    data: pd.DataFrame,
    cfg: SFTConfig,
    lora_cfg,
    seed: int,
    accelerator,
    *,
    chat_template: str,
    chunk_tokens: int,
    log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
):
    """Train in place on data[prompt, messages, solution]; returns (trained model, SFTResult).
    chat_template: data.chat_template; chunk_tokens: model.lm_head_chunk_tokens."""
    rows = data.dropna(subset=["solution"])
    if rows.empty:
        raise ValueError("SFT split has no rows with a worked solution")
    model = maybe_wrap_lora(model, lora_cfg)
    examples = encode_examples(tokenizer, rows, model, chat_template)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, generator=gen, collate_fn=list,
                        drop_last=False)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    total = cfg.epochs * len(loader)
    schedule = warmup_cosine(total, max(1, int(cfg.warmup_ratio * total)), cfg.min_lr / cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    sft_step = SFTStep(model, optimizer, accelerator, tokenizer.pad_token_id,
                       max_tokens=cfg.max_tokens_per_micro_batch, max_grad_norm=cfg.max_grad_norm, chunk_tokens=chunk_tokens)

    model.train()
    main = accelerator.is_main_process
    if main:
        log.info("sft: %d epochs x %d steps = %d steps (batch %d, peak lr %.2e)", cfg.epochs, len(loader), total,
                 cfg.batch_size, cfg.lr)
    progress = ProgressReporter("sft step", total, logger=log, enabled=main)
    step, start, loss_value = 0, time.time(), float("nan")
    for epoch in range(cfg.epochs):
        losses = []
        for batch in loader:
            losses.append(sft_step(batch))
            scheduler.step()
            step += 1
            progress.update(step, {"epoch": f"{epoch + 1}/{cfg.epochs}", "loss": f"{sum(losses) / len(losses):.4f}",
                                   "lr": f"{scheduler.get_last_lr()[0]:.2e}"})
        loss_value = sum(losses) / len(losses)
        lr = scheduler.get_last_lr()[0]
        log_metrics({"sft/loss": loss_value, "sft/lr": lr}, epoch)
        if main:
            log.info("sft epoch %d/%d  loss %.4f  lr %.2e  %.0fs", epoch + 1, cfg.epochs, loss_value, lr,
                     time.time() - start)
    model = accelerator.unwrap_model(model)
    return model, SFTResult(steps=step, final_loss=loss_value, seconds=time.time() - start)
