"""The pipeline's five stages, one module each: prepare, sft, rl, evaluate, verify.

Each module's `run(cfg)` is the ONE implementation of its stage: `dvc repro` runs it through
`python -m components.cli STAGE`, and the Prefect flow runs `dvc repro`, so both reach this code.
Every stage writes its outputs atomically (temporary folder, then rename) and logs an MLflow run.

Nothing is imported here: `dvc.yaml` gives each stage the code it imports as deps, and a stage
must not import (and so depend on) the other stages.
"""

from __future__ import annotations

import importlib
from typing import Callable

STAGE_NAMES = ("prepare", "sft", "rl", "evaluate", "verify")


def stage_function(name: str) -> Callable:
    """The `run(cfg)` of stage `name` (imported only when asked for)."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    return importlib.import_module(f"components.stages.{name}").run
