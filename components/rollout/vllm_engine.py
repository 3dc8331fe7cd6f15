"""vLLM rollouts with live weight sync: the GPU path (also runs on vLLM's CPU backend).

The engine runs in the trainer's process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so a weight sync
hands vLLM the trainer's tensors directly: its in-place `reload_weights` copies them into vLLM's
own layout (fused QKV, its dtype, repacked kernels) with no pickling, no second process and no
round trip through disk.
Under accelerate with several processes each rank runs its own colocated engine
(`external_launcher`), sampling its shard of the prompts.

Log-probs are vLLM's "processed" ones (after temperature and top-p): the behaviour policy that
really sampled the tokens. They differ from the trainer's by kernel and precision effects; the
trainer measures that as rollout/logprob_diff and can correct for it (components/rl/importance.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import torch
from transformers import PreTrainedTokenizerBase

from components.config import ConfigError, VLLMConfig
from components.rollout.types import RolloutBatch

log = logging.getLogger(__name__)


def inference_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) pairs in Hugging Face naming, as vLLM's `load_weights` expects.

    A peft model must have its adapters merged first (see `merged_adapters`); LoRA tensors are
    skipped and peft's wrapper prefixes removed. Sharded parameters (FSDP2 DTensors, ZeRO-3
    partitions) are gathered; every rank must iterate, as the gathers are collectives.
    """
    for name, param in model.named_parameters():
        if "lora_" in name or ".original_module." in name:
            continue
        name = name.removeprefix("module.").removeprefix("base_model.model.")
        name = name.replace(".base_layer", "").replace(".modules_to_save.default", "")
        if hasattr(param, "ds_id"):  # DeepSpeed ZeRO-3: gather this partitioned parameter (collective)
            import deepspeed

            with deepspeed.zero.GatheredParameters([param]):
                yield name, param.detach().clone()
            continue
        tensor = param.detach()
        if hasattr(tensor, "full_tensor"):  # DTensor under FSDP2 (collective)
            tensor = tensor.full_tensor()
        yield name, tensor


@contextlib.contextmanager
def merged_adapters(model: torch.nn.Module):
    """Merge LoRA adapters into the base weights for the duration of a sync, then unmerge."""
    merge = getattr(model, "merge_adapter", None)
    if merge is None:
        yield model
        return
    merge()
    try:
        yield model
    finally:
        model.unmerge_adapter()


def _refresh_cpu_gemm(vllm_model: torch.nn.Module) -> None:
    """CPU backend only: rebuild the packed GEMM of layers that keep their weight (the embedding,
    which is also the tied lm_head). vLLM 0.32's in-place reload repacks it from a temporary
    copy, so without this the logits keep using stale (or freed) weights; found by the weight-sync
    test in tests/vllm."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    for module in vllm_model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and weight is not None and weight.numel() > 0:
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)


class VLLMRolloutEngine:
    """An in-process vLLM `LLM` built from a model folder, then fed the trainer's weights."""

    def __init__(self, model_path: str | Path, tokenizer: PreTrainedTokenizerBase, cfg: VLLMConfig,
                 max_model_len: int, seed: int, num_processes: int = 1, device: torch.device | str = "cpu", *,
                 stop_ids: list[int], trust_remote_code: bool = False):
        """stop_ids: the ids that end a completion (components.model.chat.stop_token_ids of the policy);
        [] samples to max_new_tokens. trust_remote_code: model.trust_remote_code, passed to vLLM explicitly."""
        # Both must be set before vLLM is imported: in-process engine core, and a CPU KV cache
        # sized for the model (the CPU backend otherwise reserves 4 GiB).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kvcache_space_gib))
        try:
            from vllm import LLM
        except ImportError as exc:  # a ConfigError: the CLI prints it as one line, exit 2
            raise ConfigError(f"rollout.engine is 'vllm' but vLLM cannot be imported ({exc}): on GPU "
                              "`pip install vllm` (or `pip install -e .[vllm]`), on CPU use the environment from "
                              "`make vllm-env`; or set rollout.engine=hf") from exc
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.stop_ids = list(stop_ids)
        kwargs = {}
        if num_processes > 1:
            # One colocated engine per rank, inside the ranks accelerate launched.
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(model=str(model_path), tokenizer=str(model_path), dtype=cfg.dtype, seed=seed,
                       max_model_len=max_model_len, gpu_memory_utilization=cfg.gpu_memory_utilization,
                       max_num_seqs=cfg.max_num_seqs, enforce_eager=cfg.enforce_eager,
                       logprobs_mode="processed_logprobs", tensor_parallel_size=1,
                       trust_remote_code=trust_remote_code, **kwargs)
        self.syncs = 0

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Copy the trainer's current weights into vLLM in place, and drop KV blocks cached under
        the old weights (prefix caching would otherwise reuse stale prompt activations)."""
        with merged_adapters(model):
            weights = list(inference_weights(model))
            # vLLM's in-place reload, not model.load_weights: backends repack weights into kernel
            # layouts after loading (the CPU backend does), and reload redoes that processing.
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights),
                                                              "is_checkpoint_format": True})
            self.llm.apply_model(_refresh_cpu_gemm)
        self.llm.reset_prefix_cache()
        self.syncs += 1

    @torch.no_grad()
    def score(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> list[list[float]]:
        """Log-probs vLLM's current weights give fixed completions (temperature 1, no sampling):
        a direct check that a weight sync took effect."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p + c) for p, c in zip(prompt_ids, completion_ids)],
                                 params, use_tqdm=False)
        return [[o.prompt_logprobs[len(p) + j][t].logprob for j, t in enumerate(c)]
                for o, p, c in zip(outs, prompt_ids, completion_ids)]

    def _sampling_params(self, max_new_tokens: int, temperature: float, top_p: float, greedy: bool, seed: int | None):
        from vllm import SamplingParams

        # ignore_eos: vLLM then stops on exactly stop_token_ids, as the HF engine does (otherwise it adds
        # the tokenizer's EOS and generation_config's ids, and [] could not force full-length samples).
        return SamplingParams(max_tokens=max_new_tokens, temperature=0.0 if greedy else temperature,
                              top_p=1.0 if greedy else top_p, logprobs=0, seed=seed,
                              stop_token_ids=list(self.stop_ids), ignore_eos=True)

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                 greedy: bool = False, generator: torch.Generator | None = None) -> RolloutBatch:
        from vllm.inputs import TokensPrompt

        tok = self.tokenizer
        # Our tokenizer, not vLLM's, so prompt ids match the trainer's exactly; prompts are rendered
        # text that already carries its special tokens (components.model.chat).
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        base = int(torch.randint(0, 2**31 - len(prompts), (1,), generator=generator)) if not greedy else None
        params = [self._sampling_params(max_new_tokens, temperature, top_p, greedy,
                                        None if base is None else base + i) for i in range(len(prompts))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
        completions = [list(o.outputs[0].token_ids) for o in outs]
        logps = [[d[t].logprob for d, t in zip(o.outputs[0].logprobs, c)] for o, c in zip(outs, completions)]
        truncated = [o.outputs[0].finish_reason == "length" for o in outs]
        return _to_batch(prompts, ids, completions, logps, truncated, tok).to(self.device)


def _to_batch(prompts, prompt_ids, completions, logps, truncated, tok) -> RolloutBatch:
    """Left-pad prompts and right-pad completions into the RolloutBatch layout."""
    pad = tok.pad_token_id
    lp = max(len(i) for i in prompt_ids)
    lc = max(1, max(len(c) for c in completions))
    p_ids = torch.full((len(prompts), lp), pad, dtype=torch.long)
    p_mask = torch.zeros((len(prompts), lp), dtype=torch.long)
    c_ids = torch.full((len(prompts), lc), pad, dtype=torch.long)
    c_mask = torch.zeros((len(prompts), lc), dtype=torch.long)
    c_lp = torch.zeros((len(prompts), lc), dtype=torch.float32)
    for row, (pi, ci, li) in enumerate(zip(prompt_ids, completions, logps)):
        if pi:
            p_ids[row, lp - len(pi):] = torch.tensor(pi)
            p_mask[row, lp - len(pi):] = 1
        if ci:
            c_ids[row, : len(ci)] = torch.tensor(ci)
            c_mask[row, : len(ci)] = 1
            c_lp[row, : len(ci)] = torch.tensor(li, dtype=torch.float32)
    return RolloutBatch(prompts=list(prompts), prompt_ids=p_ids, prompt_mask=p_mask, completion_ids=c_ids,
                        completion_mask=c_mask, logprobs=c_lp, truncated=torch.tensor(truncated, dtype=torch.bool),
                        texts=tok.batch_decode(c_ids, skip_special_tokens=True))
