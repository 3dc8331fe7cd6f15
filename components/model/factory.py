"""Build or load the policy: the from-scratch tiny Llama ("tiny") or any HF causal LM path."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from components.config import ModelConfig
from components.model.source import ModelSource, loading_errors, resolve
from components.model.tokenizer import build_char_tokenizer

TINY = "tiny"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_tiny_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A small decoder-only transformer with a transformers config (so HF tooling works on it)."""
    t = cfg.tiny
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_attention_heads,
        intermediate_size=t.intermediate_size,
        max_position_embeddings=t.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(DTYPES[cfg.dtype])


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a model folder or hub id (see load_policy for the checks and errors)."""
    source = resolve(path)
    with loading_errors(source):
        return _tokenizer(source, trust_remote_code)


def _tokenizer(source: ModelSource, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    if not source.is_hub and (Path(source.where) / "tokenizer.json").exists():
        # Fast tokenizer straight from tokenizer.json: avoids AutoTokenizer picking a
        # model-specific class that drops whitespace tokens (seen with Qwen2 configs).
        tok = PreTrainedTokenizerFast.from_pretrained(source.where, trust_remote_code=trust_remote_code)
    else:
        tok = AutoTokenizer.from_pretrained(source.where, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_policy(path: str | Path, dtype: str = "float32", trust_remote_code: bool = False):
    """Load (model, tokenizer) from an HF folder or hub id. trust_remote_code is passed explicitly
    (model.trust_remote_code): a folder's own Python never runs unasked and transformers never
    prompts on stdin. A missing folder, a corrupt weights file, custom code without the setting or
    an unreachable hub raise a one-line ModelLoadError (a ConfigError) naming the path."""
    source = resolve(path)
    with loading_errors(source):
        model = AutoModelForCausalLM.from_pretrained(source.where, dtype=DTYPES[dtype],
                                                     trust_remote_code=trust_remote_code)
        return model, _tokenizer(source, trust_remote_code)


def model_max_length(name_or_path: str | Path, trust_remote_code: bool = False, default: int = 4096) -> int:
    """The model's context length from its config alone (no weights loaded)."""
    source = resolve(name_or_path)
    with loading_errors(source):
        config = AutoConfig.from_pretrained(source.where, trust_remote_code=trust_remote_code)
    return int(getattr(config, "max_position_embeddings", default))


def initial_policy(cfg: ModelConfig, seed: int):
    """The untrained starting point: a fresh tiny model, or the given HF model."""
    if cfg.name_or_path == TINY:
        tok = build_char_tokenizer()
        return build_tiny_model(cfg, tok, seed), tok
    return load_policy(cfg.name_or_path, cfg.dtype, cfg.trust_remote_code)


def training_memory(model, cfg: ModelConfig):
    """The model with model.gradient_checkpointing applied: each decoder layer's activations are
    recomputed in backward instead of kept (about one more forward pass of compute; activation memory
    grows with the layer count only at layer boundaries). Non-reentrant, so it needs no input that
    requires grad (LoRA's frozen embeddings) and works under DDP. Generation runs in eval mode and
    is unaffected."""
    if not cfg.gradient_checkpointing:
        return model
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model


def context_length(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
