"""The trained policy as an MLflow pyfunc model: `mlflow.pyfunc.load_model("models:/pipo-policy@champion")`
loads it anywhere and `.predict({"prompt": [...]})` answers. Prompts are rendered as in training
(model_config `chat_template`: the pipeline's data.chat_template) and generation stops at the end of
the model's turn.

A pyfunc wrapper rather than the transformers flavour: the embedded default has a hand-built
character tokenizer and the pipeline's own sampler, which the pyfunc reuses as is; the policy
folder inside the model is a plain Hugging Face folder either way (safetensors + tokenizer).
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import mlflow.pyfunc
import pandas as pd

POLICY_ARTIFACT = "policy"


class PolicyModel(mlflow.pyfunc.PythonModel):
    """Greedy (or sampled) completions plus the extracted final answer for each prompt."""

    def load_context(self, context) -> None:
        from components.model.factory import load_policy
        from components.rollout import HFRolloutEngine

        model, tokenizer = load_policy(context.artifacts[POLICY_ARTIFACT])
        self.engine = HFRolloutEngine(model.eval(), tokenizer)
        self.default_max_new_tokens = int(context.model_config.get("max_new_tokens", 256))
        self.chat_template = str(context.model_config.get("chat_template", "auto"))

    def predict(self, context, model_input, params=None):  # untyped: MLflow reads type hints as a schema
        import torch

        from components.model.chat import render_prompt
        from components.reward.extract import extract_boxed

        tokenizer = self.engine.tokenizer
        prompts = [render_prompt(tokenizer, p, None, self.chat_template) for p in _prompts(model_input)]
        params = params or {}
        max_new = int(params.get("max_new_tokens", self.default_max_new_tokens))
        temperature = float(params.get("temperature", 0.0))
        generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
        batch = self.engine.generate(prompts, max_new, temperature=max(temperature, 1e-6),
                                     greedy=temperature == 0.0, generator=generator)
        return pd.DataFrame({"completion": batch.texts, "answer": [extract_boxed(t) for t in batch.texts]})


def _prompts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if "prompt" not in model_input.columns:
            raise ValueError(f"input needs a 'prompt' column (got {list(model_input.columns)})")
        return model_input["prompt"].astype(str).tolist()
    if isinstance(model_input, dict):
        value = model_input.get("prompt")
        return [value] if isinstance(value, str) else [str(v) for v in value]
    if isinstance(model_input, str):
        return [model_input]
    return [str(v) for v in model_input]


# Models from code: MLflow loads this file, not a pickle of the object.
mlflow.models.set_model(PolicyModel())
