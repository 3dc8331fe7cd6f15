"""Rollout engines: sample completions with per-token log-probs under the sampling policy.

Every engine has `generate(prompts, max_new_tokens, temperature, top_p, greedy, generator) ->
RolloutBatch` and `sync_weights(model)`, called by the trainer before a rollout whenever the
optimizer has changed the weights since the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from components.model.chat import stop_token_ids
from components.rollout.hf_engine import HFRolloutEngine
from components.rollout.types import RolloutBatch


class RolloutEngine(Protocol):
    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                 greedy: bool = False, generator: torch.Generator | None = None) -> RolloutBatch: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...


def make_engine(cfg, model: torch.nn.Module, tokenizer, model_path: str | Path | None, max_model_len: int,
                seed: int, num_processes: int = 1, stop_ids: list[int] | None = None,
                trust_remote_code: bool = False) -> RolloutEngine:
    """The engine named by `rollout.engine` (cfg: RolloutConfig). `model` is the live policy
    (hf samples with it directly); vllm is built from `model_path` and synced from `model`.
    Prompts are rendered text (components.model.chat). A completion ends at any of `stop_ids`
    (default: the policy's end-of-turn ids and the tokenizer's EOS; [] never stops early).
    trust_remote_code (model.trust_remote_code): whether vLLM may run the folder's own Python."""
    if stop_ids is None:
        stop_ids = stop_token_ids(model, tokenizer)
    if cfg.engine == "hf":
        return HFRolloutEngine(model, tokenizer, stop_ids, decode_threads=cfg.decode_threads)
    if model_path is None:
        raise ValueError("rollout.engine 'vllm' needs the policy saved as a model folder to start from")
    from components.rollout.vllm_engine import VLLMRolloutEngine

    return VLLMRolloutEngine(model_path, tokenizer, cfg.vllm, max_model_len, seed, num_processes,
                             device=next(model.parameters()).device, stop_ids=stop_ids,
                             trust_remote_code=trust_remote_code)


__all__ = ["RolloutBatch", "RolloutEngine", "HFRolloutEngine", "make_engine"]
