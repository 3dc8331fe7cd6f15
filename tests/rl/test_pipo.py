"""PIPO's improvement signal, attribution and state, on hand-checked numbers (pipo-spec)."""


import pytest
import torch

from components.config import ConfigError, load_config
from components.rl.batch import TrainingBatch
from components.rl.pipo import (PIPOState, Signal, attributions, improvement_signal, paired_signal, phi,
                                pi_coefficients)


def test_helpful_update_gives_positive_xi_and_full_phi():
    # window [0.2, 0.4]: mean 0.3, ddof-0 std 0.1; mu_t 0.5 -> xi = 2
    s = improvement_signal(0.5, [0.2, 0.4], neg_scale=0.1)
    assert (s.mu_his, s.sigma_his) == pytest.approx((0.3, 0.1))
    assert s.xi == pytest.approx(2.0) and s.phi == pytest.approx(2.0)


def test_harmful_update_is_suppressed_with_neg_scale():
    s = improvement_signal(0.1, [0.2, 0.4], neg_scale=0.1)
    assert s.xi == pytest.approx(-2.0) and s.phi == pytest.approx(-0.2)


def test_flat_window_uses_unit_sigma():
    s = improvement_signal(0.75, [0.5, 0.5, 0.5], neg_scale=0.1)
    assert s.sigma_his == 1.0 and s.xi == pytest.approx(0.25)


def test_phi_is_asymmetric():
    assert phi(3.0, 0.1) == 3.0 and phi(-3.0, 0.1) == pytest.approx(-0.3) and phi(-3.0, 0.0) == 0.0


def test_attribution_abs_sums_to_group_size_and_equal_groups_are_zero():
    adv = torch.tensor([[1.0, -1.0, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0]])
    a = attributions(adv)
    # group 0: sum |Abar| = 3 -> a = 4 * adv / 3
    assert torch.allclose(a[0], 4 * adv[0] / (3 + 1e-6))
    assert a[0].abs().sum().item() == pytest.approx(4.0, abs=1e-5)
    assert torch.equal(a[1], torch.zeros(4))


def test_pi_coefficients_are_clamped_to_ten():
    c = pi_coefficients(torch.tensor([4.0, -4.0, 0.5]), 3.0)
    assert c.tolist() == [10.0, -10.0, 1.5]


def _batch(advantages=(1.0, -1.0)):
    n = len(advantages)
    return TrainingBatch(prompt_ids=torch.ones(n, 3, dtype=torch.long), prompt_mask=torch.ones(n, 3, dtype=torch.long),
                         completion_ids=torch.ones(n, 2, dtype=torch.long),
                         completion_mask=torch.ones(n, 2, dtype=torch.long), loss_mask=torch.ones(n, 2),
                         old_logprobs=torch.zeros(n, 2), advantages=torch.tensor(advantages))


def test_no_pi_step_before_min_history_or_without_cache():
    state = PIPOState(window=4, min_history=2)
    assert state.signal(0.5, 0.1) is None  # no cached batch, no history
    state.push(0.2, _batch(), group_size=2)
    assert state.signal(0.5, 0.1) is None  # history 1 < min_history 2
    state.push(0.4, _batch(), group_size=2)
    assert state.signal(0.5, 0.1).xi == pytest.approx(2.0)


def test_window_is_bounded_and_mu_t_not_in_history():
    state = PIPOState(window=2, min_history=2)
    for mu in (0.1, 0.2, 0.3):
        state.push(mu, _batch(), group_size=2)
    assert list(state.history) == [0.2, 0.3]
    s = state.signal(0.9, 0.1)
    assert s.mu_his == pytest.approx(0.25)


def test_state_round_trip_keeps_window_and_cached_batch():
    state = PIPOState(window=3, min_history=2)
    state.push(0.1, _batch(), group_size=2)
    state.push(0.3, _batch(), group_size=2)
    again = PIPOState(window=3, min_history=2)
    again.load_state_dict(state.state_dict())
    assert list(again.history) == [0.1, 0.3] and again.history.maxlen == 3
    assert torch.equal(again.cached.advantages, state.cached.advantages)
    assert torch.equal(again.cached.old_logprobs, state.cached.old_logprobs) and again.cached.ref_logprobs is None
    with pytest.raises(ValueError, match="window 3"):
        PIPOState(window=5, min_history=2).load_state_dict(state.state_dict())


def test_a_pipo_state_without_the_prompt_cache_is_refused_clearly():
    """A checkpoint written before the paired signal existed has no prompt cache: refused, naming the fix
    (it used to load with an empty cache, and a paired signal would then re-sample nothing)."""
    state = PIPOState(window=3, min_history=2)
    state.push(0.1, _batch(), group_size=2)
    old = {k: v for k, v in state.state_dict().items() if k not in ("cached_prompts", "cached_group_rewards")}
    with pytest.raises(ValueError, match="predates the paired signal.*remove its folder under rl.checkpoint_dir"):
        PIPOState(window=3, min_history=2).load_state_dict(old)


def test_window_below_two_rejected_by_the_config():
    with pytest.raises(ConfigError, match="window must be >= 2"):
        load_config(overrides=["rl.pipo.window=1"])


def test_cached_batch_holds_attributions_and_the_pi_batch_the_clamped_coefficients():
    # one group of 4 with base advantages [3, 1, -1, -3]: sum |A| = 8 -> a = 4 * A / 8 = [1.5, .5, -.5, -1.5]
    state = PIPOState(window=2, min_history=1)
    state.push(0.5, _batch((3.0, 1.0, -1.0, -3.0)), group_size=4)
    assert torch.allclose(state.cached.advantages, torch.tensor([1.5, 0.5, -0.5, -1.5]), atol=1e-6)
    pi = state.pi_batch(Signal(mu_t=0, mu_his=0, sigma_his=1, xi=10.0, phi=10.0))  # c = clamp(a * 10, -10, 10)
    assert pi.advantages.tolist() == [10.0, pytest.approx(5.0), pytest.approx(-5.0), -10.0]
    assert torch.equal(pi.old_logprobs, state.cached.old_logprobs)  # everything else is B_{t-1} as cached


def test_authors_mode_clamps_before_lambda_and_puts_lambda_on_the_loss():
    # window [0.2, 0.4] (sigma 0.1), mu_t 0.1 -> xi = -2. Standard: phi = lambda * xi = -0.2, loss x 1.
    # Authors: the coefficient takes xi itself (-2) and lambda (0.1) multiplies the loss instead.
    standard = improvement_signal(0.1, [0.2, 0.4], neg_scale=0.1)
    authors = improvement_signal(0.1, [0.2, 0.4], neg_scale=0.1, mode="authors")
    assert (standard.phi, standard.loss_scale) == (pytest.approx(-0.2), 1.0)
    assert (authors.xi, authors.phi, authors.loss_scale) == (pytest.approx(-2.0), pytest.approx(-2.0), 0.1)
    # window [0.2, 0.21] (sigma 0.005), mu_t 0 -> xi = -41, a = 1.5. Standard: c = 1.5 * 0.1 * -41 = -6.15.
    # Authors: c = clamp(1.5 * -41) = -10, and lambda on the loss: an effective -1.0 (cap 10 * lambda)
    a = torch.tensor([1.5])
    standard = improvement_signal(0.0, [0.2, 0.21], neg_scale=0.1)
    authors = improvement_signal(0.0, [0.2, 0.21], neg_scale=0.1, mode="authors")
    assert pi_coefficients(a, standard.phi).item() == pytest.approx(-6.15) and standard.loss_scale == 1.0
    assert pi_coefficients(a, authors.phi).item() == -10.0 and authors.loss_scale == 0.1
    helpful = improvement_signal(0.5, [0.2, 0.4], neg_scale=0.1, mode="authors")
    assert (helpful.phi, helpful.loss_scale) == (pytest.approx(2.0), 1.0)


def test_authors_mode_clips_progress_and_replaces_a_flat_sigma_by_one():
    # progress clipped to +-5 before dividing; sigma below 1e-6 -> 1 (theirs); a single past mean gives sigma 1
    s = improvement_signal(100.0, [0.0, 0.0], neg_scale=0.1, mode="authors")
    assert s.sigma_his == 1.0 and s.xi == pytest.approx(5.0)
    assert improvement_signal(100.0, [0.0, 0.5], neg_scale=0.1, mode="authors").xi == pytest.approx(5.0 / 0.25)
    assert improvement_signal(0.7, [0.5], neg_scale=0.1, mode="authors").xi == pytest.approx(0.2)
    assert improvement_signal(100.0, [0.0, 0.0], neg_scale=0.1).xi == pytest.approx(100.0)  # standard: sigma 1


def test_zero_signal_or_zero_lambda_takes_no_step():
    assert not improvement_signal(0.1, [0.2, 0.4], neg_scale=0.0).takes_step
    assert not improvement_signal(0.1, [0.2, 0.4], neg_scale=0.0, mode="authors").takes_step
    assert not improvement_signal(0.2, [0.2, 0.2], neg_scale=0.1).takes_step  # xi = 0
    assert improvement_signal(0.1, [0.2, 0.4], neg_scale=0.1, mode="authors").takes_step


def test_paired_signal_is_the_change_over_its_standard_error():
    s = paired_signal(0.5, 0.56, 0.02, neg_scale=0.1)
    assert (s.mu_his, s.mu_t, s.sigma_his) == (0.5, 0.56, 0.02) and s.xi == pytest.approx(3.0)
    hurt = paired_signal(0.5, 0.44, 0.02, neg_scale=0.1)
    assert hurt.xi == pytest.approx(-3.0) and hurt.phi == pytest.approx(-0.3)
    assert paired_signal(0.5, 0.5, 0.0, neg_scale=0.1).sigma_his == 1.0  # no spread: unit scale, xi 0


def test_state_round_trip_keeps_the_paired_prompt_cache():
    state = PIPOState(window=2, min_history=1)
    state.push(0.5, _batch((3.0, 1.0, -1.0, -3.0)), group_size=4, prompts=torch.tensor([7]),
               group_rewards=torch.tensor([0.25]))
    again = PIPOState(window=2, min_history=1)
    again.load_state_dict(state.state_dict())
    assert again.cached_prompts.tolist() == [7] and again.cached_group_rewards.tolist() == [0.25]
