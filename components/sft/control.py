"""The control for RL: continue SFT from the same checkpoint for the same wall time.

If RL's gain over SFT is real, spending RL's compute on more supervised epochs over the same
worked solutions must gain less. The learning rate re-warms and anneals on a cosine over the
time budget (measured by the clock, not steps), so the control ends annealed like SFT did.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pandas as pd
import torch
from torch.utils.data import DataLoader

from components.config import SFTConfig
from components.sft.step import SFTStep
from components.sft.train import encode_examples


def continue_sft_for(model, tokenizer, data: pd.DataFrame, cfg: SFTConfig, seconds: float, seed: int,
                     lr: float, accelerator, *, chat_template: str,
                     chunk_tokens: int, clock: Callable[[], float] = time.monotonic) -> tuple[torch.nn.Module, int]:
    """Train on data[prompt, messages, solution] for `seconds` of wall time (read from `clock`), prompts
    rendered per data.chat_template (`chat_template`); returns (model, optimizer steps taken). A step starts
    only while the budget lasts, so the last one may end past it."""
    rows = data.dropna(subset=["solution"])
    examples = encode_examples(tokenizer, rows, model, chat_template)
    loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), collate_fn=list)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=cfg.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    sft_step = SFTStep(model, optimizer, accelerator, tokenizer.pad_token_id,
                       max_tokens=cfg.max_tokens_per_micro_batch, max_grad_norm=cfg.max_grad_norm, chunk_tokens=chunk_tokens)
    model.train()
    start, steps = clock(), 0
    while True:
        for batch in loader:
            elapsed = clock() - start
            if elapsed >= seconds:
                return accelerator.unwrap_model(model), steps
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * elapsed / seconds))
            sft_step(batch)
            steps += 1
