"""SFT warm start: next-token loss on worked solutions, prompt tokens masked out.

The learning rate warms up then anneals (cosine) to `min_lr`: measured here, RL's apparent gain
over an SFT checkpoint trained at a constant high lr vanished once SFT was annealed, so the warm
start is trained to convergence before RL is asked to improve on it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch.utils.data import DataLoader

from components.config import SFTConfig
from components.model.lora import maybe_wrap_lora

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class SFTResult:
    steps: int
    final_loss: float
    seconds: float


def encode_examples(tokenizer, prompts: list[str], targets: list[str]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example: BOS + prompt + target + EOS, loss on target and EOS only."""
    examples = []
    for prompt, target in zip(prompts, targets):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        ids = head + p + t
        labels = [IGNORE] * (len(head) + len(p)) + t
        examples.append((ids, labels))
    return examples


def collate(pad_id: int):
    def fn(batch):
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (x, y) in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
            labels[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        return ids, mask, labels

    return fn


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """lr multiplier: linear warmup to 1, then cosine down to min_ratio at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def sequence_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )


def train_sft(
    model,
    tokenizer,
    data: pd.DataFrame,
    cfg: SFTConfig,
    lora_cfg,
    seed: int,
    accelerator,
    log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
):
    """Train in place on data[prompt, solution]; returns (trained model, SFTResult)."""
    rows = data.dropna(subset=["solution"])
    if rows.empty:
        raise ValueError("SFT split has no rows with a worked solution")
    model = maybe_wrap_lora(model, lora_cfg)
    examples = encode_examples(tokenizer, rows["prompt"].tolist(), rows["solution"].tolist())
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                        collate_fn=collate(tokenizer.pad_token_id), drop_last=False)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    total = cfg.epochs * len(loader)
    schedule = warmup_cosine(total, max(1, int(cfg.warmup_ratio * total)), cfg.min_lr / cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    model.train()
    step, start, loss_value = 0, time.time(), float("nan")
    for epoch in range(cfg.epochs):
        losses = []
        for ids, mask, labels in loader:
            loss = sequence_loss(model, ids, mask, labels)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
        loss_value = sum(losses) / len(losses)
        lr = scheduler.get_last_lr()[0]
        log_metrics({"sft/loss": loss_value, "sft/lr": lr}, epoch)
        if accelerator.is_main_process:
            log.info("sft epoch %d/%d  loss %.4f  lr %.2e  %.0fs", epoch + 1, cfg.epochs, loss_value, lr,
                     time.time() - start)
    model = accelerator.unwrap_model(model)
    return model, SFTResult(steps=step, final_loss=loss_value, seconds=time.time() - start)
