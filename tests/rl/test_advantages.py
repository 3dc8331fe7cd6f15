"""Advantage estimators against values computed by hand."""

import math

import torch

from components.config import algorithms
from components.rl.advantages import group_relative


def test_grpo_advantage_hand_values():
    # group [1, 0, 0, 1]: mean 0.5, sample std (ddof=1) = sqrt(1/3) = 0.57735
    adv = group_relative(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), scale_rewards=True)
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert torch.allclose(adv, torch.tensor([[expected, -expected, -expected, expected]]), atol=1e-5)


def test_grpo_advantage_equal_group_is_zero():
    adv = group_relative(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), scale_rewards=True)
    assert torch.equal(adv, torch.zeros(2, 3))


def test_grpo_advantage_unscaled_is_centered_reward():
    adv = group_relative(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), scale_rewards=False)
    assert torch.allclose(adv, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))


def test_dr_grpo_advantage_is_centered_without_std():
    adv = group_relative(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]),
                         scale_rewards=algorithms.get("dr_grpo").published.scale_rewards)
    assert torch.equal(adv, torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]))
