"""The RL loop with every base algorithm, with and without PIPO, on a tiny SFT'd policy."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from components.config import load_config
from components.model.factory import initial_policy
from components.rl import trainer as trainer_module
from components.rl.trainer import RLTrainer, train_rl
from tests.support.rl import TINY, parity_reward, sums
from components.rl.trainer import score_batch as real_score_batch  # before the fixture swaps it out

ALGO_OVERRIDES = {
    "grpo": [],
    "dr_grpo": ["rl.algorithm=dr_grpo"],
    "dapo": ["rl.algorithm=dapo"],  # each algorithm's published clip range comes with its name
    "gspo": ["rl.algorithm=gspo"],
}
@pytest.fixture(autouse=True)
def mixed_rewards(monkeypatch):
    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)


@pytest.fixture(scope="module")
def policy():
    cfg = load_config(overrides=TINY)
    return initial_policy(cfg.model, seed=0)


def run(policy, overrides, iterations=4, checkpoint_dir=None, resume=False, log_metrics=lambda m, s: None):
    cfg = load_config(overrides=TINY + overrides + [f"rl.iterations={iterations}"])
    model, tok = policy
    model = copy.deepcopy(model)
    model, result = train_rl(model, tok, sums(200, 1), cfg.rl, 0, Accelerator(cpu=True),
                             checkpoint_dir=checkpoint_dir, resume=resume, rollout=cfg.rollout, reward=cfg.reward,
                             model_cfg=cfg.model, log_metrics=log_metrics)
    return model, result


def test_trainer_scored_logprobs_agree_with_the_hf_sampler(policy):
    """With recompute on, pi_old comes from a trainer forward pass; the hf engine samples with the
    same module, so the measured mismatch is float noise and the IS weights are 1."""
    _, result = run(policy, ["rollout.recompute_logprobs=true", "rollout.importance_sampling.enabled=true"],
                    iterations=2)
    for h in result.history:
        assert h["rollout/logprob_diff"] < 1e-4
        assert h["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("pipo", [False, True], ids=["base", "pipo"])
@pytest.mark.parametrize("algorithm", sorted(ALGO_OVERRIDES))
def test_every_algorithm_trains_with_and_without_pipo(policy, algorithm, pipo, monkeypatch):
    # Every reward the verifier hands out, per iteration: mu_t must be their mean, whatever DAPO
    # then filters (dynamic sampling) or shapes (overlong penalty) before the update.
    scored: list[torch.Tensor] = []
    per_iteration: list[torch.Tensor] = []

    def recording_reward(batch, sources, answers, *_):
        scored.append(parity_reward(batch, sources, answers))
        return scored[-1]

    def end_of_iteration(metrics, step):
        per_iteration.append(torch.cat(scored))
        scored.clear()

    monkeypatch.setattr(trainer_module, "score_batch", recording_reward)
    overrides = ALGO_OVERRIDES[algorithm] + [f"rl.pipo.enabled={str(pipo).lower()}"]
    before = {k: v.clone() for k, v in policy[0].state_dict().items()}
    model, result = run(policy, overrides, log_metrics=end_of_iteration)
    last = result.history[-1]
    assert 0.0 <= last["reward/mean"] <= 1.0 and math.isfinite(last["loss/policy"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights did not move"
    assert len(per_iteration) == len(result.history)
    for h, rewards in zip(result.history, per_iteration):
        assert h["reward/mean"] == pytest.approx(float(rewards.double().mean()), abs=1e-12)
    if pipo:
        assert [h["pipo/active"] for h in result.history] == [0.0, 0.0, 1.0, 1.0]
        for h, rewards in zip(result.history, per_iteration):
            assert h["pipo/mu_t"] == pytest.approx(float(rewards.double().mean()), abs=1e-12)
        assert "pipo/pi_loss" in last and math.isfinite(last["pipo/pi_loss"])
    else:
        assert not any(k.startswith("pipo/") for k in last)


def test_pipo_window_metrics_match_previous_reward_means(policy):
    _, result = run(policy, ["rl.pipo.enabled=true", "rl.pipo.window=3"], iterations=6)
    means = [h["reward/mean"] for h in result.history]
    for t, h in enumerate(result.history):
        if t < 3:
            assert h["pipo/active"] == 0.0
            continue
        window = torch.tensor(means[t - 3:t], dtype=torch.float64)
        sigma = float(window.std(unbiased=False))
        assert h["pipo/mu_his"] == pytest.approx(float(window.mean()))
        assert h["pipo/sigma_his"] == pytest.approx(sigma if sigma >= 1e-8 else 1.0)


def test_kl_term_enters_the_loss_when_beta_positive(policy):
    """The KL term is in the loss, not only in the log: the same run with beta > 0 ends on other weights
    than with beta 0 (every row runs in both, so the KL term is the only difference), and once the policy
    has left the reference the logged KL is positive."""
    same = ["rl.skip_zero_advantage=false"]
    without, _ = run(policy, same + ["rl.beta=0.0"], iterations=3)
    with_kl, result = run(policy, same + ["rl.beta=1.0"], iterations=3)
    assert all("actor/kl" in h for h in result.history)
    assert result.history[-1]["actor/kl"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(without.state_dict().values(), with_kl.state_dict().values()))


def test_dapo_dynamic_sampling_keeps_only_informative_groups(policy, monkeypatch):
    """Every group the base update trains on has rewards that differ (non-zero std), although some
    sampled groups had all-equal rewards; the rewards are re-derived from the trained completions."""
    updated: list = []
    base_update = RLTrainer.base_update

    def recording_update(self, batch, generator, joint):
        updated.append((batch, self.tokenizer))
        return base_update(self, batch, generator, joint)

    monkeypatch.setattr(RLTrainer, "base_update", recording_update)
    _, result = run(policy, ALGO_OVERRIDES["dapo"] + ["rl.dapo.max_resample_rounds=3"], iterations=3)
    assert any(h["frac_reward_zero_std"] > 0 for h in result.history), "nothing to filter: the test proves nothing"
    assert len(updated) == 3
    G = 4
    for batch, tok in updated:
        texts = tok.batch_decode(batch.completion_ids, skip_special_tokens=True)
        rewards = parity_reward(SimpleNamespace(texts=texts), None, None).view(-1, G)
        assert len(texts) == 8 * G  # refilled to rl.prompts_per_iteration groups
        assert (rewards.std(dim=1) > 0).all(), rewards


def test_resume_after_iteration_5_matches_uninterrupted_run(policy, tmp_path):
    overrides = ["rl.pipo.enabled=true", "rl.checkpoint_every=5"]
    full_model, full = run(policy, overrides, iterations=10, checkpoint_dir=tmp_path / "a")

    # A second run that stops after iteration 5 (its checkpoint), then a fresh process-like resume.
    run(policy, overrides, iterations=5, checkpoint_dir=tmp_path / "b")
    resumed_model, resumed = run(policy, overrides, iterations=10, checkpoint_dir=tmp_path / "b", resume=True)

    assert len(resumed.history) == 5
    for a, b in zip(full.history[5:], resumed.history):
        stable = {k: v for k, v in a.items() if not k.startswith("perf/")}
        assert stable == {k: b[k] for k in stable}
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


def test_checkpoint_of_another_config_is_refused(policy, tmp_path):
    from components.rl.checkpoint import CheckpointMismatchError

    run(policy, ["rl.checkpoint_every=2"], iterations=2, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        run(policy, ["rl.lr=1e-3"], iterations=4, checkpoint_dir=tmp_path, resume=True)


def test_three_non_finite_losses_in_a_row_stop_the_stage(policy, monkeypatch):
    from components.rl.update import NonFiniteLossError, PolicyUpdate

    def nan_loss(self, *args, **kwargs):
        return torch.tensor(float("nan"), requires_grad=True), {}

    monkeypatch.setattr(PolicyUpdate, "loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite"):
        run(policy, [], iterations=5)


def _trainer_with_cached_batch(policy, overrides):
    """A trainer and one rollout of 4 responses to one prompt, attributed +,+,-,- (as PIPO caches it)."""
    from components.rl.batch import TrainingBatch
    from components.rl.logprobs import completion_logprobs

    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.pipo.joint=false", "rl.lr=0.05"] + overrides)
    model, tok = policy
    trainer = RLTrainer(copy.deepcopy(model), tok, sums(20, 2), cfg.rl, 0, Accelerator(cpu=True),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    b = trainer.engine.generate(["3+4="] * 4, 6, generator=torch.Generator().manual_seed(3))
    cached = TrainingBatch(prompt_ids=b.prompt_ids, prompt_mask=b.prompt_mask, completion_ids=b.completion_ids,
                           completion_mask=b.completion_mask, loss_mask=b.completion_mask.float(),
                           old_logprobs=b.logprobs, advantages=torch.tensor([1.0, 1.0, -1.0, -1.0]))

    def seq_logprob():
        with torch.no_grad():
            lp, _ = completion_logprobs(trainer.model, b.prompt_ids, b.prompt_mask, b.completion_ids,
                                        b.completion_mask)
        return (lp * b.completion_mask).sum(-1)

    return trainer, cached, seq_logprob


def test_helpful_update_pi_step_reinforces_the_previous_batch(policy):
    from components.rl.pipo import pi_coefficients

    trainer, cached, seq_logprob = _trainer_with_cached_batch(policy, [])
    before = seq_logprob()
    trainer.pipo.pi_step(cached.with_advantages(pi_coefficients(cached.advantages, phi_value=2.0)))  # xi = 2: it helped
    delta = seq_logprob() - before
    assert (delta[:2] > 0).all(), delta  # positively attributed responses became more likely
    assert (delta[2:] < 0).all(), delta  # negatively attributed ones less likely


def test_harmful_update_with_zero_neg_scale_gives_zero_gradient(policy):
    from components.rl.pipo import improvement_signal, pi_coefficients

    trainer, cached, seq_logprob = _trainer_with_cached_batch(policy, ["rl.pipo.neg_scale=0.0"])
    signal = improvement_signal(0.1, [0.3, 0.5], neg_scale=0.0)  # the last update hurt: xi = -3
    assert signal.xi < 0 and signal.phi == 0.0
    before = seq_logprob()
    trainer.pipo.pi_step(cached.with_advantages(pi_coefficients(cached.advantages, signal.phi)))
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert grads and all(torch.count_nonzero(g) == 0 for g in grads)
    assert torch.equal(seq_logprob(), before)


@pytest.mark.parametrize("clip_mode", ["standard", "authors"])
def test_zero_neg_scale_after_a_harmful_update_takes_no_step(policy, clip_mode):
    """lambda = 0 and xi < 0: phi = 0 (standard) or a zero loss factor (authors), so PIPO must not step at
    all. A step on zero coefficients would still move the weights through AdamW's momentum from the step before."""
    from collections import deque

    from components.rl.pipo import pi_coefficients

    trainer, cached, _ = _trainer_with_cached_batch(policy, ["rl.pipo.neg_scale=0.0",
                                                             f"rl.pipo.pi_clip_mode={clip_mode}"])
    trainer.pipo.pi_step(cached.with_advantages(pi_coefficients(cached.advantages, 1.0)))  # momentum to carry
    trainer.pipo.state.cached = cached
    trainer.pipo.state.history = deque([0.5, 0.7], maxlen=trainer.pipo.state.window)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    pi = trainer.pipo.before_update(0.1, 0)  # well below the window: the last update hurt
    assert pi.signal is not None and pi.signal.xi < 0 and not pi.signal.takes_step
    assert pi.rows_run == 0 and pi.rows == len(cached)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    trainer.close()


def _prime_pipo(trainer, cached):
    from collections import deque

    trainer.pipo.state.cached = cached.with_advantages(cached.advantages * 0.5)  # attributions
    trainer.pipo.state.history = deque([0.5, 0.7], maxlen=trainer.pipo.state.window)


@pytest.mark.parametrize("pi_steps,expected", [("one", 1), ("match_base", 4)])
def test_pi_steps_match_base_takes_as_many_steps_as_the_base_update(policy, pi_steps, expected):
    """4 rows, mini-batches of 2, 2 epochs: the base update takes 4 optimizer steps; so does the PI update
    with pi_steps match_base (the authors' full actor update), one with pi_steps one."""
    trainer, cached, _ = _trainer_with_cached_batch(policy, [f"rl.pipo.pi_steps={pi_steps}", "rl.ppo_epochs=2",
                                                             "rl.mini_batch_size=2"])
    steps = []
    real_step = trainer.update.step
    trainer.update.step = lambda batch, plan, *rest: steps.append(len(plan.rows)) or real_step(batch, plan, *rest)
    trainer.base_update(cached, torch.Generator().manual_seed(0), None)
    assert len(steps) == 4
    steps.clear()
    _prime_pipo(trainer, cached)
    pi = trainer.pipo.before_update(0.9, 5, torch.Generator().manual_seed(0))  # above the window: it helped
    assert len(steps) == expected and pi.rows == sum(steps) == 4 * (2 if expected > 1 else 1)
    trainer.close()


@pytest.mark.parametrize("algorithm,surrogate,eps", [("dapo", "authors", 0.2), ("grpo", "authors", 0.2),
                                                     ("gspo", "standard", 3e-4)])
def test_authors_pi_loss_uses_their_surrogate_the_symmetric_clip_and_lambda_on_the_loss(policy, algorithm,
                                                                                      surrogate, eps):
    trainer, cached, _ = _trainer_with_cached_batch(policy, [f"rl.algorithm={algorithm}",
                                                             "rl.pipo.pi_clip_mode=authors", "rl.pipo.neg_scale=0.25"])
    calls = []
    real_loss = trainer.update.loss_fn
    trainer.update.loss_fn = lambda *a, **kw: calls.append(kw) or real_loss(*a, **kw)
    _prime_pipo(trainer, cached)
    pi = trainer.pipo.before_update(0.1, 0)  # below the window: xi < 0
    assert pi.signal.xi < 0 and pi.signal.phi == pytest.approx(pi.signal.xi)  # the clamp takes xi itself
    assert calls and all((c["surrogate"], c["eps_low"], c["eps_high"]) == (surrogate, eps, eps) for c in calls)
    spec = trainer.pipo.pi_loss(pi.signal)
    assert spec.scale == 0.25  # lambda multiplies the loss
    mb = cached.micro_batch(torch.arange(len(cached)))
    full, _ = trainer.update.loss(mb, spec.__class__(spec.surrogate, spec.eps_low, spec.eps_high), 4.0, 4.0)
    scaled, _ = trainer.update.loss(mb, spec, 4.0, 4.0)
    assert float(scaled.detach()) == pytest.approx(0.25 * float(full.detach()))
    helped = trainer.pipo.before_update(0.9, 0)
    assert trainer.pipo.pi_loss(helped.signal).scale == 1.0
    trainer.close()


def test_standard_pi_loss_is_the_base_loss(policy):
    trainer, cached, _ = _trainer_with_cached_batch(policy, ["rl.algorithm=dapo"])
    _prime_pipo(trainer, cached)
    signal = trainer.pipo.state.signal(0.1, 0.1)
    assert trainer.pipo.pi_loss(signal) == trainer.update.base_loss
    assert (trainer.update.base_loss.eps_low, trainer.update.base_loss.eps_high) == (0.2, 0.28)
    trainer.close()


def test_score_batch_applies_the_configured_format_weight():
    from components.reward.pool import pool_for

    score_batch = real_score_batch
    texts = ["so \\boxed{7}", "\\boxed{7} and \\boxed{8}", "\\boxed{5}"]
    batch = SimpleNamespace(texts=texts)
    sources = ["reasoning_gym/chain_sum"] * 3
    unshaped = load_config(overrides=["reward.correct_weight=1.0", "reward.format_weight=0.0"]).reward
    shaping = load_config(overrides=["reward.correct_weight=1.0", "reward.format_weight=0.5"]).reward
    with pool_for(unshaped) as pool:
        plain = score_batch(batch, sources, ["7", "8", "7"], pool, unshaped)
        shaped = score_batch(batch, sources, ["7", "8", "7"], pool, shaping)
    assert plain.tolist() == [1.0, 1.0, 0.0]
    # one well-formed final box earns the format bonus, with or without the right answer
    assert shaped.tolist() == [1.5, 1.0, 0.5]


def test_rollout_batches_concat_with_repadding_and_select_rows():
    from components.rollout.types import RolloutBatch

    def batch(n, lp, lc, tag):
        return RolloutBatch(prompts=[f"{tag}{i}" for i in range(n)], prompt_ids=torch.full((n, lp), 7),
                            prompt_mask=torch.ones(n, lp, dtype=torch.long), completion_ids=torch.full((n, lc), 8),
                            completion_mask=torch.ones(n, lc, dtype=torch.long), logprobs=torch.full((n, lc), -1.0),
                            truncated=torch.zeros(n, dtype=torch.bool), texts=[f"t{tag}{i}" for i in range(n)])

    both = RolloutBatch.concat([batch(2, 3, 2, "a"), batch(1, 1, 4, "b")], pad_id=0)
    assert both.prompts == ["a0", "a1", "b0"] and both.texts == ["ta0", "ta1", "tb0"]
    assert both.prompt_ids[2].tolist() == [0, 0, 7] and both.prompt_mask[2].tolist() == [0, 0, 1]  # left-padded
    assert both.completion_ids[0].tolist() == [8, 8, 0, 0] and both.logprobs[0].tolist() == [-1.0, -1.0, 0.0, 0.0]
    picked = both.select(torch.tensor([2, 0]))
    assert picked.prompts == ["b0", "a0"] and torch.equal(picked.completion_ids, both.completion_ids[[2, 0]])
