"""What several stages share: the pipeline's fixed folders, the prepared splits, the accelerator."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from components.config import Config

INIT_DIR = Path("models/init")
VALIDATION_DIR = Path("reports/validation")
RL_PLOTS_DIR = Path("reports/rl")  # the rl stage's curves for DVC's plots (dvc.yaml)
POINTER_FILE = "source.json"  # models/init for a hub/local HF model: a pointer, not a copy
MODEL_LABELS = ("untrained", "sft", "rl")


def accelerator(cfg: Config):
    """A training stage's accelerator: the process layout `accelerate launch` set up, and the
    configured mixed precision (model.mixed_precision: params.yaml decides, not the launch flags)."""
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.model.mixed_precision)


def read_split(cfg: Config, split: str) -> pd.DataFrame:
    path = Path(cfg.data.out_dir) / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"prepared split not found: {path} (run the prepare stage first)")
    return pd.read_parquet(path)


def model_dir(label: str, cfg: Config) -> Path:
    """The pipeline's folder of a model (for an un-fine-tuned HF model: the folder holding its pointer)."""
    return {"untrained": INIT_DIR, "sft": Path(cfg.sft.out_dir), "rl": Path(cfg.rl.out_dir)}[label]


def start_label(cfg: Config) -> str:
    """The model RL started from, as evaluate labels it: "sft", or "untrained" when the sft stage did not
    train (sft.enabled=false: models/sft is then the base model itself, recorded in its lineage)."""
    from components.model.lineage import sft_skipped

    return "untrained" if sft_skipped(cfg.sft.out_dir) else "sft"


def evaluated_labels(cfg: Config) -> tuple[str, ...]:
    """The models evaluate scores: all three, or without "sft" when it is the untrained model again."""
    return MODEL_LABELS if start_label(cfg) == "sft" else tuple(m for m in MODEL_LABELS if m != "sft")


def model_folder(label: str, cfg: Config) -> str:
    """The folder (or hub name, for an un-fine-tuned HF model) holding a pipeline model."""
    path = model_dir(label, cfg)
    pointer = path / POINTER_FILE
    return json.loads(pointer.read_text())["name_or_path"] if pointer.exists() else str(path)
