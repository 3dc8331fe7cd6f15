"""Saving a policy as a plain Hugging Face folder, the one format every stage reads back."""

from __future__ import annotations

from pathlib import Path


def save_policy(model, tokenizer, out_dir: Path) -> None:
    """Save as a plain HF folder (safetensors); a LoRA adapter is merged first."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
