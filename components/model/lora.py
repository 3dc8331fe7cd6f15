"""Optional LoRA adapters via peft (imported only when enabled: its cold import is ~20 s)."""

from __future__ import annotations

from components.config import LoraConfig


def maybe_wrap_lora(model, cfg: LoraConfig):
    if not cfg.enabled or hasattr(model, "peft_config"):
        return model
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)
