"""Atomic RL checkpoints: written to a temporary folder, fsynced, renamed; `latest` updated last.

Layout of one checkpoint folder `iter-000050/`:
  model/                 the policy as a Hugging Face folder (safetensors), usable on its own
  weights.safetensors    the exact trainable state, loaded back into the live model on resume
  trainer_state.pt       optimizer, sampler, PIPO state, RNGs, counters: tensors and plain
                         containers only, read with torch.load(weights_only=True)
  meta.json              iteration and the fingerprint of the config that wrote it

Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from components.io_utils import atomic_dir, atomic_write_text

log = logging.getLogger(__name__)

LATEST = "latest"


class CheckpointMismatchError(ValueError):
    pass


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def save_checkpoint(root: Path, iteration: int, model, tokenizer, trainer_state: dict, meta: dict,
                    keep: int = 3) -> Path:
    root = Path(root)
    target = root / checkpoint_name(iteration)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        save_model(model, str(tmp / "weights.safetensors"))
        torch.save(trainer_state, tmp / "trainer_state.pt")
        (tmp / "meta.json").write_text(json.dumps({"iteration": iteration, **meta}, indent=2, sort_keys=True))
    atomic_write_text(root / LATEST, target.name + "\n")
    for path in sorted(p for p in root.glob("iter-*") if p.is_dir())[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return target


def latest_checkpoint(root: Path) -> Path | None:
    """The folder `latest` names, or None when there is none yet."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text().strip()
    return path if path.is_dir() else None


def folder_identity(path: Path) -> str:
    """A cheap identity of a model folder: names, sizes and the head and tail bytes of each file.

    Enough to tell one SFT checkpoint from another without hashing gigabytes of weights.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path)}:{size}".encode())
        with open(file, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def load_checkpoint(path: Path, model, expected_meta: dict) -> dict:
    """Load weights into `model` and return the trainer state; refuse a checkpoint of another config."""
    meta = json.loads((path / "meta.json").read_text())
    diffs = [f"{k}: checkpoint {meta.get(k)!r} != now {v!r}" for k, v in expected_meta.items() if meta.get(k) != v]
    if diffs:
        raise CheckpointMismatchError(f"checkpoint {path} was written by a different setup:\n  " + "\n  ".join(diffs))
    load_model(model, str(path / "weights.safetensors"))
    return torch.load(path / "trainer_state.pt", weights_only=True)
