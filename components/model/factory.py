"""Build or load the policy: the from-scratch tiny Llama ("tiny") or any HF causal LM path."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from components.config import ModelConfig
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


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    if path.is_dir() and (path / "tokenizer.json").exists():
        # Fast tokenizer straight from tokenizer.json: avoids AutoTokenizer picking a
        # model-specific class that drops whitespace tokens (seen with Qwen2 configs).
        tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_policy(path: str | Path, dtype: str = "float32"):
    """Load (model, tokenizer) from an HF folder or hub name; errors name the path."""
    path = str(path)
    if not Path(path).exists() and "/" not in path:
        raise FileNotFoundError(f"model path not found: {path}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    return model, load_tokenizer(path)


def initial_policy(cfg: ModelConfig, seed: int):
    """The untrained starting point: a fresh tiny model, or the given HF model."""
    if cfg.name_or_path == TINY:
        tok = build_char_tokenizer()
        return build_tiny_model(cfg, tok, seed), tok
    return load_policy(cfg.name_or_path, cfg.dtype)


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
