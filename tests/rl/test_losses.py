"""Policy losses (and the overlong penalty) against values computed by hand."""

import math

import pytest
import torch

from components.config import algorithms
from components.rl.advantages import ADVANTAGES
from components.rl.losses import POLICY_LOSSES, algorithm_loss, clipped_surrogate, seq_mean_token_mean

# Each algorithm's loss as the update calls it: its record's policy loss with its aggregation.
grpo_loss, dr_grpo_loss, dapo_loss, gspo_loss = (algorithm_loss(algorithms.get(n))
                                                 for n in ("grpo", "dr_grpo", "dapo", "gspo"))

# The losses take every setting explicitly (no shadow defaults): the PPO clip of params.yaml.
PPO = {"eps_low": 0.2, "eps_high": 0.2, "max_len": None, "surrogate": "standard"}


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
    loss, stats = grpo_loss(logp, logp.clone(), torch.tensor([1.0, -3.0]), mask, **PPO)
    assert loss.item() == pytest.approx(-(1.0 - 3.0) / 2)
    assert stats["clip_frac"] == 0.0


def test_grpo_loss_gradient_raises_logprob_of_positive_advantage():
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss, _ = grpo_loss(logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 2), **PPO)
    loss.backward()
    # d(-mean(rho*A))/dlogp = -A/2 per token at rho = 1
    assert torch.allclose(logp.grad, torch.tensor([[-1.0, -1.0]]))


def test_every_record_names_registered_blocks_that_fit():
    """Each algorithm's record names an estimator, a policy loss and an aggregation the registries hold,
    the loss's level (token or sequence values) matching the aggregation's."""
    from components.rl.losses import AGGREGATIONS

    assert set(AGGREGATIONS) == set(algorithms.AGGREGATIONS)
    for name in algorithms.names():
        record = algorithms.get(name)
        assert record.advantage in ADVANTAGES and record.policy_loss in POLICY_LOSSES
        algorithm_loss(record)  # raises on a level mismatch


def test_a_policy_loss_refuses_an_aggregation_of_the_other_level():
    record = algorithms.Algorithm(name="mismatch", paper="-", published=algorithms.get("grpo").published,
                                  aggregation="seq-mean", policy_loss="token_ratio")
    with pytest.raises(ValueError, match="policy loss 'token_ratio' gives token values"):
        algorithm_loss(record)


from components.rl.losses import authors_surrogate  # noqa: E402
from components.rl.rewards import overlong_penalty  # noqa: E402


def test_dr_grpo_loss_divides_by_batch_times_max_len():
    # two sequences, 3 and 1 valid tokens, ratio 1: per-token loss = -A
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    loss, _ = dr_grpo_loss(logp, logp, torch.tensor([1.0, 2.0]), mask, **{**PPO, "max_len": 8})
    # sum of -A over valid tokens = -(3*1 + 1*2) = -5; / (2 * 8)
    assert loss.item() == pytest.approx(-5 / 16)


def test_dapo_loss_is_token_mean_over_the_batch_with_clip_higher():
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    loss, _ = dapo_loss(logp, logp, torch.tensor([1.0, 2.0]), mask, **PPO)
    assert loss.item() == pytest.approx(-5 / 4)  # 4 valid tokens in the batch (GRPO would give -1.5)
    # clip-higher: ratio 1.25 stays unclipped for A > 0 with eps_high 0.28, is clipped at 1.2 with 0.2
    old = torch.zeros(1, 1)
    new = torch.full((1, 1), math.log(1.25))
    hi, _ = dapo_loss(new, old, torch.tensor([1.0]), torch.ones(1, 1), **{**PPO, "eps_high": 0.28})
    lo, _ = dapo_loss(new, old, torch.tensor([1.0]), torch.ones(1, 1), **PPO)
    assert hi.item() == pytest.approx(-1.25) and lo.item() == pytest.approx(-1.2)


def test_gspo_uses_the_sequence_ratio_and_ignores_padding():
    # log-ratios 0.1 and 0.3 on valid tokens (mean 0.2), 5.0 on padding must not count
    logp = torch.tensor([[0.1, 0.3, 5.0]])
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1, 1, 0]])
    loss, stats = gspo_loss(logp, old, torch.tensor([1.0]), mask, **{**PPO, "eps_low": 0.5, "eps_high": 0.5})
    assert loss.item() == pytest.approx(-math.exp(0.2), rel=1e-6)
    clipped, stats = gspo_loss(logp, old, torch.tensor([1.0]), mask, **{**PPO, "eps_low": 3e-4, "eps_high": 4e-4})
    assert clipped.item() == pytest.approx(-(1 + 4e-4)) and stats["clip_frac"] == 1.0


def test_truncated_completions_masked_out_contribute_nothing():
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])  # second sequence truncated and masked
    loss, _ = grpo_loss(logp, logp, torch.tensor([1.0, 100.0]), mask, **PPO)
    # GRPO averages sequences: the masked one adds 0 and still counts in the mean
    assert loss.item() == pytest.approx(-0.5)


def test_authors_surrogate_is_unbounded_below_for_negative_coefficients():
    # c < 0, ratio 0.5: standard form clips at 0.8 (loss 0.8); authors' -min(rho, clip(rho))*c = 0.5
    std, _ = clipped_surrogate(torch.tensor([0.5]), torch.tensor([-1.0]), 0.2, 0.2)
    auth, _ = authors_surrogate(torch.tensor([0.5]), torch.tensor([-1.0]), 0.2, 0.2)
    assert std.item() == pytest.approx(0.8) and auth.item() == pytest.approx(0.5)


def test_overlong_penalty_ramps_over_the_buffer():
    pen = overlong_penalty(torch.tensor([10, 16, 18, 20]), max_len=20, buffer=4, factor=1.0)
    assert torch.allclose(pen, torch.tensor([0.0, 0.0, -0.5, -1.0]))


def test_losses_have_no_default_clip_range():
    # A default here would silently shadow rl.epsilon / rl.epsilon_high if a caller forgot them.
    for name in algorithms.names():
        loss = algorithm_loss(algorithms.get(name))
        with pytest.raises(TypeError, match="eps_low"):
            loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), eps_high=0.2, max_len=4,
                 surrogate="standard")


def test_kl_k3_is_zero_at_the_reference_and_hand_checked_off_it():
    from components.rl.losses import kl_k3

    lp = torch.zeros(1, 2)
    assert kl_k3(lp, lp, torch.ones(1, 2)).item() == 0.0
    # d = log pi_ref - log pi = log 2 on the one counted token: exp(d) - d - 1 = 1 - log 2
    kl = kl_k3(lp, torch.tensor([[math.log(2.0), 5.0]]), torch.tensor([[1, 0]]))
    assert kl.item() == pytest.approx(1 - math.log(2.0))
