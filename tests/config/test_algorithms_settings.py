"""Naming an algorithm gives its published settings (its record); an explicit rl.* value wins;
the loss, the advantage and the group filter receive the effective values, and MLflow gets them as params."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator

from components.config import load_config
from components.rl import trainer as trainer_module
from components.rl.rewards import InformativeGroups, KeepAllGroups, OverlongPenalty
from components.rl.trainer import RLTrainer
from tests.support.rl import TINY, parity_reward, sums

# (epsilon, epsilon_high, scale_rewards) each paper uses
PUBLISHED = {"grpo": (0.2, 0.2, True), "dr_grpo": (0.2, 0.2, False), "dapo": (0.2, 0.28, True),
             "gspo": (3e-4, 4e-4, True)}


@pytest.fixture(autouse=True)
def mixed_rewards(monkeypatch):
    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)


@pytest.fixture(scope="module")
def policy():
    from components.model.factory import initial_policy

    return initial_policy(load_config(overrides=TINY).model, seed=0)


def one_iteration_spied(policy, overrides, monkeypatch):
    """Run one real iteration; return what every loss call and advantage call received."""
    cfg = load_config(overrides=TINY + overrides)
    model, tok = policy
    trainer = RLTrainer(copy.deepcopy(model), tok, sums(50, 0), cfg.rl, 0, Accelerator(cpu=True),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    loss_calls, advantage_calls = [], []
    real_loss, real_advantage = trainer.update.loss_fn, trainer.advantage_fn

    def loss_spy(*args, **kwargs):
        loss_calls.append(kwargs)
        return real_loss(*args, **kwargs)

    def advantage_spy(rewards, **kwargs):
        advantage_calls.append(kwargs)
        return real_advantage(rewards, **kwargs)

    trainer.update.loss_fn, trainer.advantage_fn = loss_spy, advantage_spy
    trainer.iteration(0)
    trainer.close()
    return trainer, loss_calls, advantage_calls


@pytest.mark.parametrize("algorithm", sorted(PUBLISHED))
def test_naming_an_algorithm_gives_its_published_settings_in_the_loss(policy, algorithm, monkeypatch):
    eps, eps_high, scale = PUBLISHED[algorithm]
    trainer, losses, advantages = one_iteration_spied(policy, [f"rl.algorithm={algorithm}"], monkeypatch)
    assert losses, "no loss was computed"
    assert all(c["eps_low"] == eps and c["eps_high"] == eps_high for c in losses), losses[0]
    assert all(c["surrogate"] == "standard" for c in losses)
    assert advantages == [{"scale_rewards": scale}]
    dapo = algorithm == "dapo"
    assert isinstance(trainer.group_filter, InformativeGroups if dapo else KeepAllGroups)
    assert [type(s) for s in trainer.reward_shaping] == ([OverlongPenalty] if dapo else [])


@pytest.mark.parametrize("algorithm", sorted(PUBLISHED))
def test_explicit_params_override_the_published_settings(policy, algorithm, monkeypatch):
    overrides = [f"rl.algorithm={algorithm}", "rl.epsilon=0.1", "rl.epsilon_high=0.3", "rl.scale_rewards=false"]
    _, losses, advantages = one_iteration_spied(policy, overrides, monkeypatch)
    assert all(c["eps_low"] == 0.1 and c["eps_high"] == 0.3 for c in losses)
    assert advantages == [{"scale_rewards": False}]


def test_dr_grpo_scales_by_the_std_only_when_asked():
    from components.rl.advantages import ADVANTAGES

    dr_grpo = ADVANTAGES[load_config(overrides=["rl.algorithm=dr_grpo"]).rl.record.advantage]
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    centered = dr_grpo(rewards, scale_rewards=False)
    assert torch.allclose(centered, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))
    assert torch.allclose(dr_grpo(rewards, scale_rewards=True), centered / (0.5 + 1e-6))


def test_effective_settings_are_mlflow_params():
    flat = load_config(overrides=["rl.algorithm=gspo", "rl.epsilon_high=0.001"]).flat()
    assert flat["rl.epsilon"] is None  # what the user wrote
    assert flat["rl.effective.epsilon"] == 3e-4 and flat["rl.effective.epsilon_high"] == 0.001
    assert flat["rl.effective.scale_rewards"] is True and flat["rl.effective.dynamic_sampling"] is False
    dapo = load_config(overrides=["rl.algorithm=dapo"]).flat()
    assert (dapo["rl.effective.dynamic_sampling"], dapo["rl.effective.overlong_buffer"]) == (True, 4)
    assert dapo["rl.effective.loss_aggregation"] == "token mean over the batch"


def test_published_settings_live_in_the_records_not_in_params():
    """rl.algorithm_defaults is gone: a params file that still has it is refused, naming the key."""
    from components.config import ConfigError

    with pytest.raises(ConfigError, match="algorithm_defaults"):
        load_config(overrides=["rl.algorithm_defaults={grpo: {epsilon: 0.2, epsilon_high: 0.2, scale_rewards: true}}"])


def test_dapo_knobs_left_null_take_the_papers_values():
    dapo = load_config(overrides=["rl.algorithm=dapo", "rl.dapo.dynamic_sampling=null",
                                  "rl.dapo.overlong_penalty=null"]).rl.effective
    assert (dapo.dynamic_sampling, dapo.overlong_penalty) == (True, 1.0)  # Yu et al. 2025
    grpo = load_config(overrides=["rl.dapo.dynamic_sampling=true"]).rl.effective
    assert (grpo.dynamic_sampling, grpo.overlong_buffer) == (False, 0)  # GRPO's record takes no DAPO step


def test_dapo_aggregates_over_every_token_of_the_batch():
    """DAPO's token mean: a long and a short response with the same advantage weigh by their token counts
    (GRPO's per-sequence mean weighs them equally)."""
    from components.config import algorithms
    from components.rl.losses import algorithm_loss

    dapo_loss, grpo_loss = (algorithm_loss(algorithms.get(n)) for n in ("dapo", "grpo"))

    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    kw = dict(eps_low=0.2, eps_high=0.28, max_len=4, surrogate="standard")
    dapo_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), mask, **kw)[0].backward()
    assert torch.allclose(logp.grad[mask.bool()], torch.full((5,), -1 / 5))  # every token 1/5
    logp.grad = None
    grpo_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), mask, **kw)[0].backward()
    assert torch.allclose(logp.grad[0], torch.full((4,), -1 / 8)) and logp.grad[1, 0] == -0.5
