"""Issue 24's controls and fidelity options for PIPO, with hand-computed numbers: the window's membership
(rl.pipo.window_membership), the authors' sigma rule, rl.pipo.blind (random sign of xi) and rl.pipo.joint
(the PI loss on B_{t-1} in the base step on B_t: one optimizer step)."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from accelerate import Accelerator

from components.config import load_config
from components.model.factory import initial_policy
from components.rl.batch import MicroBatches, TrainingBatch
from components.rl.logprobs import completion_logprobs
from components.rl.pipo import PIPOState, Signal, improvement_signal
from components.rl.pipo_plugin import PIPO
from components.rl.update import PolicyUpdate
from tests.support.rl import TINY

LR, NEG_SCALE = 0.05, 0.1


def _state(membership: str, history: list[float], mode: str = "standard") -> PIPOState:
    state = PIPOState(window=len(history), min_history=1, clip_mode=mode, membership=membership)
    state.history.extend(history)
    state.cached = object()  # only `active` reads it here
    return state


# ---- fidelity: which means the window holds, and the authors' sigma rule --------------------------------

def test_window_previous_measures_mu_t_against_the_k_means_before_it():
    # W = [0.2, 0.4, 0.6, 0.8]: mean 0.5, std (ddof 0) sqrt(0.05) = 0.2236068; xi = 0.5 / 0.2236068 = 2.2360680
    s = _state("previous", [0.2, 0.4, 0.6, 0.8]).signal(1.0, NEG_SCALE)
    assert (s.mu_his, s.sigma_his, s.xi) == pytest.approx((0.5, math.sqrt(0.05), 2.2360680))


def test_window_with_current_pushes_mu_t_in_before_measuring():
    # W = [0.4, 0.6, 0.8, 1.0] (0.2 out, mu_t in): mean 0.7, std sqrt(0.05); xi = 0.3 / 0.2236068 = 1.3416408
    state = _state("with_current", [0.2, 0.4, 0.6, 0.8])
    s = state.signal(1.0, NEG_SCALE)
    assert (s.mu_his, s.sigma_his, s.xi) == pytest.approx((0.7, math.sqrt(0.05), 1.3416408))
    assert list(state.history) == [0.2, 0.4, 0.6, 0.8]  # mu_t joins H once, after the update (push), as before


def test_window_with_current_before_the_window_is_full():
    # H = [0.5] (K = 4, min_history 1): W = [0.5, 0.9], mean 0.7, std 0.2, xi = 0.2 / 0.2 = 1
    state = PIPOState(window=4, min_history=1, membership="with_current")
    state.history.append(0.5)
    state.cached = object()
    s = state.signal(0.9, NEG_SCALE)
    assert (s.mu_his, s.sigma_his, s.xi) == pytest.approx((0.7, 0.2, 1.0))


@pytest.mark.parametrize("window", [[0.5, 0.5, 0.5], [0.5, 0.5 + 2e-7]])  # std 0 and std 1e-7, both below 1e-6
def test_authors_mode_replaces_a_sigma_below_1e6_by_one(window):
    # flat window after a reward collapse: sigma -> 1, so xi = mu_t - mu_his (about 0.1), not 0.1 / 1e-6 = 1e5
    s = improvement_signal(0.6, window, NEG_SCALE, mode="authors")
    assert s.sigma_his == 1.0 and s.xi == pytest.approx(0.6 - sum(window) / len(window))


def test_authors_mode_keeps_a_sigma_of_1e6_and_above():
    s = improvement_signal(0.6, [0.5, 0.5 + 4e-6], NEG_SCALE, mode="authors")  # std 2e-6: kept
    assert s.sigma_his == pytest.approx(2e-6) and s.xi == pytest.approx((0.6 - 0.500002) / 2e-6, rel=1e-4)


# ---- a PIPO object over a real update of a tiny policy --------------------------------------------------

def build(overrides=(), micro_rows: int | None = None):
    """PIPO over a real PolicyUpdate; B_{t-1} (attributed +,+,-,- once pushed) and B_t: two groups of 4."""
    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.pipo.window=2", f"rl.lr={LR}",
                                        f"rl.pipo.neg_scale={NEG_SCALE}", *overrides])
    torch.manual_seed(0)
    model, _ = initial_policy(cfg.model, seed=0)
    acc = Accelerator(cpu=True)
    model, optimizer = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=LR))
    update = PolicyUpdate(model, optimizer, acc, cfg.rl, chunk_tokens=64, sharded=False)
    micro = MicroBatches(rows=64, max_tokens=4096, max_rows=micro_rows)
    pipo = PIPO(cfg.rl.pipo, update=update, micro=micro, lr=LR, ppo_epochs=1, group_size=4,
                authors_surrogate="authors", seed=7)
    vocab = model.config.vocab_size

    def batch(advantages):
        prompt, completion = torch.randint(3, vocab, (4, 3)), torch.randint(3, vocab, (4, 5))
        ones_p, ones_c = torch.ones_like(prompt), torch.ones_like(completion)
        with torch.no_grad():
            old, _ = completion_logprobs(model, prompt, ones_p, completion, ones_c)
        return TrainingBatch(prompt_ids=prompt, prompt_mask=ones_p, completion_ids=completion,
                             completion_mask=ones_c, loss_mask=ones_c.float(), old_logprobs=old,
                             advantages=torch.tensor(advantages))

    return pipo, update, micro, model, batch([1.0, 1.0, -1.0, -1.0]), batch([0.5, -0.5, 1.5, -1.5])


def prime(pipo, cached, means=(0.5, 0.7)):
    for mu in means:  # H = [0.5, 0.7]: mu_his 0.6, sigma_his 0.1
        pipo.after_update(mu, cached, torch.tensor([0]), torch.tensor([0.5], dtype=torch.float64))


# ---- rl.pipo.blind --------------------------------------------------------------------------------------

def test_blind_signs_are_fair_and_independent_of_the_measured_sign():
    pipo = build(["rl.pipo.blind=true"])[0]
    measured = random.Random(1)
    n, positive, agree = 4000, 0, 0
    for it in range(n):
        xi = measured.choice([-1.0, 1.0]) * measured.uniform(0.1, 3.0)
        s = Signal(mu_t=0.0, mu_his=0.0, sigma_his=1.0, xi=xi, phi=xi if xi >= 0 else NEG_SCALE * xi)
        used = s.blinded(pipo.blind_sign(it))
        assert abs(used.xi_used) == abs(xi) and abs(used.phi) == abs(s.phi) and used.xi == xi
        positive += used.xi_used > 0
        agree += (used.xi_used > 0) == (xi > 0)
    # binomial(4000, 0.5): standard deviation 0.0079; 0.04 is 5 of them
    assert abs(positive / n - 0.5) < 0.04 and abs(agree / n - 0.5) < 0.04


def test_blind_signs_depend_only_on_the_seed_and_iteration():
    first, again, other = (build(["rl.pipo.blind=true"])[0] for _ in range(3))
    other.seed = 8
    signs = [first.blind_sign(it) for it in range(64)]
    assert signs == [again.blind_sign(it) for it in range(64)]  # a second run, or a resumed one
    assert signs != [other.blind_sign(it) for it in range(64)]


@pytest.mark.parametrize("blind", [False, True])
def test_blind_pi_step_keeps_magnitudes_and_steps_with_the_drawn_sign(blind):
    pipo, update, _, _, cached, _ = build([f"rl.pipo.blind={str(blind).lower()}", "rl.pipo.joint=false"])
    prime(pipo, cached)
    it = next(i for i in range(100) if pipo.blind_sign(i) < 0)  # an iteration whose drawn sign is -
    report = pipo.before_update(0.9, it)  # measured xi = (0.9 - 0.6) / 0.1 = 3 > 0
    s = report.signal
    assert s.xi == pytest.approx(3.0) and report.optimizer_steps == 1
    assert s.xi_used == pytest.approx(-3.0 if blind else 3.0) and s.phi == pytest.approx(s.xi_used)
    coefficients = pipo.state.pi_batch(s).advantages
    assert torch.allclose(coefficients, s.xi_used * torch.tensor([1.0, 1.0, -1.0, -1.0]) / (1 + 2.5e-7))


def test_blind_keeps_the_damped_magnitude_of_a_harmful_update():
    pipo, *_ , cached, _ = build(["rl.pipo.blind=true"])
    prime(pipo, cached)
    it = next(i for i in range(100) if pipo.blind_sign(i) > 0)
    s = pipo.before_update(0.3, it).signal  # measured xi = -3, phi = lambda xi = -0.3; drawn sign +
    assert (s.xi, s.xi_used, s.phi) == pytest.approx((-3.0, 3.0, 0.3))


# ---- rl.pipo.joint --------------------------------------------------------------------------------------

def _reference_delta(model, batches, max_grad_norm: float) -> dict[str, torch.Tensor]:
    """One AdamW step (lr LR, torch's defaults otherwise) on sum over (batch, c) of GRPO's surrogate at
    ratio 1: -mean_i c_i * mean_t exp(logp - old), gradients clipped to max_grad_norm."""
    model = copy.deepcopy(model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    loss = 0.0
    for b, c in batches:
        logp, _ = completion_logprobs(model, b.prompt_ids, b.prompt_mask, b.completion_ids, b.completion_mask)
        ratio = torch.exp(logp - b.old_logprobs)
        loss = loss - (c * ratio.mean(dim=1)).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return {k: v.detach() - before[k] for k, v in model.named_parameters()}


@pytest.mark.parametrize("mode,mu_t", [("standard", 0.9), ("standard", 0.3), ("authors", 0.3)])
def test_joint_step_is_one_adamw_step_on_the_sum_of_both_losses(mode, mu_t):
    """Micro-batches of 2 rows: each batch's loss over its own 4 sequences, accumulated over 4 backwards."""
    pipo, update, micro, model, cached, current = build(["rl.pipo.joint=true", f"rl.pipo.pi_clip_mode={mode}",
                                                         "rl.max_grad_norm=1000"], micro_rows=2)
    prime(pipo, cached)
    # xi = +3: c = 3 a; xi = -3: standard c = lambda xi a = -0.3 a, authors c = -3 a with the loss x lambda
    c_prev = (3.0 if mu_t > 0.5 else -0.3) * torch.tensor([1.0, 1.0, -1.0, -1.0]) / (1 + 2.5e-7)
    expected = _reference_delta(model, [(current, current.advantages), (cached, c_prev)], 1000.0)
    base_only = _reference_delta(model, [(current, current.advantages)], 1000.0)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    steps = []
    real_step = update.optimizer.step
    update.optimizer.step = lambda *a, **k: steps.append(1) or real_step(*a, **k)
    report = pipo.before_update(mu_t, 2)
    assert report.optimizer_steps == 0 and not steps and report.joint is not None  # nothing stepped yet
    plan = micro.for_one_step(current.prompt_mask, current.completion_mask)
    assert len(plan.micro_batches) == 2 and len(report.joint.plan.micro_batches) == 2
    outcome = update.step(current, plan, LR, update.base_loss, report.joint)
    assert outcome is not None and len(steps) == 1
    assert math.isfinite(report.pi_loss)
    for k, v in model.named_parameters():
        delta = v.detach() - before[k]
        # 1e-5 of an lr of 0.05: AdamW's first step is about lr x sign(g), and a tiny g carries float noise
        assert torch.allclose(delta, expected[k], atol=1e-5), k
    assert any(not torch.allclose(expected[k], base_only[k], atol=1e-3) for k in expected)  # the PI loss counts


def _trainer(policy, overrides):
    from components.rl.trainer import RLTrainer
    from tests.support.rl import sums

    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.pipo.min_history=1", "rl.lr=0.01",
                                        "rl.update_threads=1", "rollout.decode_threads=1"] + overrides)
    model, tok = policy
    return RLTrainer(copy.deepcopy(model), tok, sums(40, 1), cfg.rl, 0, Accelerator(cpu=True),
                     rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)


@pytest.mark.parametrize("joint,steps_with_pi", [(False, 2), (True, 1)])
def test_joint_takes_one_optimizer_step_per_iteration(monkeypatch, joint, steps_with_pi):
    from components.rl import trainer as trainer_module
    from tests.support.rl import parity_reward

    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    policy = initial_policy(load_config(overrides=TINY).model, seed=0)
    trainer = _trainer(policy, [f"rl.pipo.joint={str(joint).lower()}"])
    steps = []
    real_step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: steps.append(1) or real_step(*a, **k)
    trainer.iteration(0)  # nothing cached yet: the base step only
    assert len(steps) == 1
    for it in range(1, 6):
        before = len(steps)
        metrics = trainer.iteration(it)
        if metrics["pipo/phi"] != 0.0:  # a PI update was due (not xi = 0: two equal batch means)
            break
    assert metrics["pipo/active"] == 1.0 and metrics["pipo/phi"] != 0.0
    assert len(steps) - before == steps_with_pi and math.isfinite(metrics["pipo/pi_loss"])
    assert metrics["pipo/xi_used"] == metrics["pipo/xi"]


@pytest.mark.parametrize("bad,fix", [(["rl.pipo.pi_steps=match_base"], "rl.pipo.pi_steps"),
                                     (["rl.pipo.pi_lr_scale=0.5"], "rl.pipo.pi_lr_scale")])
def test_joint_refuses_settings_it_cannot_honour(bad, fix):
    with pytest.raises(ValueError, match=fix):
        load_config(overrides=TINY + ["rl.pipo.joint=true"] + bad)
