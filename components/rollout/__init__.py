"""Rollout engines: sample completions with per-token log-probs under the sampling policy."""

from components.rollout.types import RolloutBatch
from components.rollout.hf_engine import HFRolloutEngine

__all__ = ["RolloutBatch", "HFRolloutEngine"]
