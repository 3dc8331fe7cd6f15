"""Atomic RL checkpoints: written to a temporary folder, fsynced, renamed; `latest` updated last.

Everything loads without unpickling arbitrary objects: the model is safetensors, the trainer
state is tensors/dicts readable with torch.load(weights_only=True), the rest is JSON.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from components.io_utils import atomic_dir, atomic_write_text

LATEST = "latest"


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def save_checkpoint(root: Path, iteration: int, model, tokenizer, optimizer, sampler, keep: int = 3) -> Path:
    root = Path(root)
    target = root / checkpoint_name(iteration)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        torch.save(
            {
                "iteration": iteration,
                "optimizer": optimizer.state_dict(),
                "sampler": sampler.state_dict(),
                "rng_torch": torch.get_rng_state(),
                "rng_numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                "rng_python": torch.tensor(random.getstate()[1], dtype=torch.int64),
            },
            tmp / "trainer_state.pt",
        )
    atomic_write_text(root / LATEST, target.name + "\n")
    old = sorted(p for p in root.glob("iter-*") if p.is_dir())[:-keep]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return target
