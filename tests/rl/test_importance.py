"""Sampler/trainer mismatch metrics and truncated importance-sampling weights."""

from __future__ import annotations

import math

import pytest
import torch

from components.rl.importance import logprob_mismatch, truncated_is_weights
from components.config import algorithms
from components.rl.losses import algorithm_loss


def test_mismatch_is_measured_on_completion_tokens_only():
    trainer = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    sampler = torch.tensor([[-1.1, -1.7, -9.0], [-0.5, -9.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    m = logprob_mismatch(trainer, sampler, mask)
    assert m["rollout/logprob_diff"] == pytest.approx((0.1 + 0.3 + 0.0) / 3)
    assert m["rollout/logprob_diff_max"] == pytest.approx(0.3)
    assert logprob_mismatch(trainer, sampler, torch.zeros_like(mask))["rollout/logprob_diff"] == 0.0


def test_token_weights_are_capped_ratios_and_zero_on_padding():
    trainer = torch.tensor([[math.log(0.5), math.log(0.9), 0.0]])
    sampler = torch.tensor([[math.log(0.25), math.log(0.9), 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    w = truncated_is_weights(trainer, sampler, mask, cap=10.0)
    assert torch.allclose(w, torch.tensor([[2.0, 1.0, 0.0]]))
    capped = truncated_is_weights(trainer, sampler, mask, cap=1.5)
    assert torch.allclose(capped, torch.tensor([[1.5, 1.0, 0.0]]))
    assert not capped.requires_grad


def test_sequence_level_weight_is_the_geometric_mean():
    trainer = torch.log(torch.tensor([[0.5, 0.5, 1.0]]))
    sampler = torch.log(torch.tensor([[0.25, 1.0, 1.0]]))  # ratios 2 and 0.5 -> geometric mean 1
    mask = torch.tensor([[1, 1, 0]])
    w = truncated_is_weights(trainer, sampler, mask, cap=5.0, level="sequence")
    assert torch.allclose(w, torch.tensor([[1.0, 1.0, 0.0]]), atol=1e-6)
    with pytest.raises(ValueError, match="level"):
        truncated_is_weights(trainer, sampler, mask, cap=5.0, level="batch")


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "dapo", "gspo"])
def test_unit_weights_change_nothing_and_weights_scale_the_loss(name):
    torch.manual_seed(0)
    lp = torch.randn(4, 5) * 0.1 - 1.0
    old = lp + torch.randn(4, 5) * 0.01
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mask = torch.ones(4, 5)
    eps_low, eps_high = {"dapo": (0.2, 0.28), "gspo": (3e-4, 4e-4)}.get(name, (0.2, 0.2))  # each one's usual range
    kw = {"eps_low": eps_low, "eps_high": eps_high, "max_len": 5, "surrogate": "standard"}
    loss = algorithm_loss(algorithms.get(name))
    base, _ = loss(lp, old, adv, mask, **kw)
    same, _ = loss(lp, old, adv, mask, **kw, is_weights=torch.ones(4, 5))
    halved, _ = loss(lp, old, adv, mask, **kw, is_weights=torch.full((4, 5), 0.5))
    assert torch.allclose(base, same)
    assert torch.allclose(halved, 0.5 * base)
