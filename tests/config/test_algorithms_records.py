"""Adding an algorithm is one record: a toy one registered here is accepted by config validation, gets
its published settings, and trains (its own advantage estimator included) through the real trainer."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator

from components.config import ConfigError, algorithms, load_config
from components.rl import trainer as trainer_module
from components.rl.advantages import ADVANTAGES, register_advantage
from components.rl.trainer import RLTrainer
from tests.support.rl import TINY, parity_reward, sums

TOY = algorithms.Algorithm(
    name="toy_sign",
    paper="this test",
    published=algorithms.Published(epsilon=0.1, epsilon_high=0.3, scale_rewards=False),
    advantage="toy_sign",
    aggregation="token-mean",
)


def toy_sign_advantages(rewards: torch.Tensor, scale_rewards: bool) -> torch.Tensor:
    """+1 above the group mean, -1 below, 0 at it."""
    return torch.sign(rewards - rewards.mean(dim=1, keepdim=True))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    register_advantage("toy_sign")(toy_sign_advantages)
    algorithms.register(TOY)
    yield TOY
    algorithms.unregister(TOY.name)
    del ADVANTAGES["toy_sign"]


def test_an_unregistered_algorithm_is_refused_naming_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"rl.algorithm 'toy_sign' is unknown; allowed: grpo, dr_grpo, dapo, gspo"):
        load_config(overrides=["rl.algorithm=toy_sign"])


def test_a_registered_record_validates_and_trains_one_iteration(toy):
    cfg = load_config(overrides=TINY + ["rl.algorithm=toy_sign", "rl.pipo.enabled=false"])
    settings = cfg.rl.effective
    assert (settings.epsilon, settings.epsilon_high, settings.scale_rewards) == (0.1, 0.3, False)
    assert settings.loss_aggregation == "token mean over the batch"
    from components.model.factory import initial_policy

    model, tok = initial_policy(cfg.model, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = RLTrainer(copy.deepcopy(model), tok, sums(50, 0), cfg.rl, 0, Accelerator(cpu=True),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    calls = []
    real_loss = trainer.update.loss_fn

    def loss_spy(*args, **kwargs):
        calls.append(kwargs)
        return real_loss(*args, **kwargs)

    trainer.update.loss_fn = loss_spy
    try:
        metrics = trainer.iteration(0)
    finally:
        trainer.close()
    assert trainer.advantage_fn is toy_sign_advantages
    assert calls and all((c["eps_low"], c["eps_high"]) == (0.1, 0.3) for c in calls)
    assert metrics["loss/policy"] == metrics["loss/policy"]  # finite, not nan
    moved = trainer.acc.unwrap_model(trainer.model).state_dict()
    assert any(not torch.equal(before[k], v) for k, v in moved.items()), "weights did not move"
