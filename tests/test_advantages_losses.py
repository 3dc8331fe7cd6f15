"""Advantage estimators and policy losses against values computed by hand."""

import math

import pytest
import torch

from components.rl.advantages import ADVANTAGES, grpo_advantages
from components.rl.losses import POLICY_LOSSES, clipped_surrogate, grpo_loss, seq_mean_token_mean


def test_grpo_advantage_hand_values():
    # group [1, 0, 0, 1]: mean 0.5, sample std (ddof=1) = sqrt(1/3) = 0.57735
    adv = grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert torch.allclose(adv, torch.tensor([[expected, -expected, -expected, expected]]), atol=1e-5)


def test_grpo_advantage_equal_group_is_zero():
    adv = grpo_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(adv, torch.zeros(2, 3))


def test_grpo_advantage_unscaled_is_centered_reward():
    adv = grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), scale_rewards=False)
    assert torch.allclose(adv, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))


def test_clipped_surrogate_positive_advantage_caps_ratio():
    # A = 1: ratio 1.5 is clipped to 1.2 -> loss -1.2; ratio 0.5 is not clipped -> loss -0.5
    loss, clipped = clipped_surrogate(torch.tensor([1.5, 0.5]), torch.tensor([1.0, 1.0]), 0.2, 0.2)
    assert torch.allclose(loss, torch.tensor([-1.2, -0.5]))
    assert clipped.tolist() == [True, False]


def test_clipped_surrogate_negative_advantage_caps_low_ratio():
    # A = -1: ratio 0.5 -> max(-0.5, -0.8)... loss = -min(-0.5, -0.8) = 0.8; ratio 1.5 -> 1.5
    loss, clipped = clipped_surrogate(torch.tensor([0.5, 1.5]), torch.tensor([-1.0, -1.0]), 0.2, 0.2)
    assert torch.allclose(loss, torch.tensor([0.8, 1.5]))
    assert clipped.tolist() == [True, False]


def test_seq_mean_token_mean_ignores_padding():
    per_token = torch.tensor([[1.0, 3.0, 100.0], [2.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # sequence means 2 and 2 -> 2; padding values (100) must not leak in
    assert seq_mean_token_mean(per_token, mask).item() == pytest.approx(2.0)


def test_grpo_loss_at_ratio_one_is_minus_mean_advantage():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.5]]))
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, stats = grpo_loss(logp, logp.clone(), torch.tensor([1.0, -3.0]), mask)
    assert loss.item() == pytest.approx(-(1.0 - 3.0) / 2)
    assert stats["clip_frac"] == 0.0


def test_grpo_loss_gradient_raises_logprob_of_positive_advantage():
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss, _ = grpo_loss(logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 2))
    loss.backward()
    # d(-mean(rho*A))/dlogp = -A/2 per token at rho = 1
    assert torch.allclose(logp.grad, torch.tensor([[-1.0, -1.0]]))


def test_registries_hold_grpo():
    assert ADVANTAGES["grpo"] is grpo_advantages and POLICY_LOSSES["grpo"] is grpo_loss
