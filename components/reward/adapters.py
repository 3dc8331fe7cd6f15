"""The verifier behind verl's and TRL's reward interfaces.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` (components.reward.score)
directly, or `compute_shaped_score` with the format weights as reward_kwargs; TRL calls reward
functions with the completions and the dataset's columns as keyword lists.

Like compute_score, each item is bounded by reward.timeout_s (components.reward.score runs every
item that needs it in a worker process of its module-level scoring pool); a TRL batch is scored as
one batch, over up to reward.workers workers.
"""

from __future__ import annotations

from typing import Any

from components.reward.score import compute_score, format_score, score_items, shaped_reward


def compute_shaped_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    correct_weight: float = 1.0,
    format_weight: float = 0.0,
) -> float:
    """compute_score plus the optional format term (verl passes the weights as reward_kwargs)."""
    correct = compute_score(data_source, solution_str, ground_truth, extra_info)
    return shaped_reward(correct, solution_str, correct_weight=correct_weight, format_weight=format_weight)


def _completion_text(completion: Any) -> str:
    """TRL passes plain strings, or lists of chat messages for conversational datasets."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")


def trl_reward_func(
    completions: list[Any], ground_truth: list[Any], data_source: list[str] | str = "math", **kwargs: Any
) -> list[float]:
    """TRL reward-function adapter: dataset columns arrive as keyword lists aligned with completions."""
    sources = [data_source] * len(completions) if isinstance(data_source, str) else list(data_source)
    if len(sources) != len(completions):
        raise ValueError(f"data_source has {len(sources)} entries for {len(completions)} completions")
    return score_items(sources, [_completion_text(c) for c in completions], list(ground_truth))


def trl_format_reward_func(completions: list[Any], **kwargs: Any) -> list[float]:
    """format_score as a TRL reward function (weight it with GRPOConfig.reward_weights)."""
    return [format_score(_completion_text(c)) for c in completions]
