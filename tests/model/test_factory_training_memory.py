"""model.gradient_checkpointing and model.mixed_precision: what they change and what they must not."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator

from components.config import ConfigError, load_config
from components.model.factory import initial_policy, training_memory
from components.rl.batch import MicroBatches
from components.rl.trainer import RLTrainer
from components.rl.update import PolicyUpdate
from tests.support.rl import TINY, parity_reward, sums, training_batch


def _grads_after_one_step(model, cfg, batch):
    acc = Accelerator(cpu=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    model, opt = acc.prepare(model, opt)
    model.train()
    update = PolicyUpdate(model, opt, acc, cfg.rl, chunk_tokens=16, sharded=False)
    micro = MicroBatches(rows=len(batch), max_tokens=60).for_one_step(batch.prompt_mask, batch.completion_mask)
    assert update.step(batch, micro, lr=0.0, spec=update.base_loss) is not None
    return [p.grad.clone() for p in acc.unwrap_model(model).parameters()]


def test_gradient_checkpointing_recomputes_without_changing_the_gradient():
    cfg = load_config(overrides=TINY + ["rl.algorithm=dapo", "rl.max_grad_norm=1e9", "rl.max_completion_length=11"])
    model, tok = initial_policy(cfg.model, seed=0)
    batch = training_batch(len(tok))
    plain = _grads_after_one_step(copy.deepcopy(model), cfg, batch)
    on = load_config(overrides=TINY + ["model.gradient_checkpointing=true"]).model
    checkpointed = training_memory(copy.deepcopy(model), on)
    assert checkpointed.is_activation_checkpointing
    assert not training_memory(copy.deepcopy(model), cfg.model).is_activation_checkpointing
    recomputed = _grads_after_one_step(checkpointed, cfg, batch)
    assert max(float((a - b).abs().max()) for a, b in zip(plain, recomputed)) <= 1e-6
    assert max(float(g.abs().max()) for g in plain) > 1e-4


@pytest.fixture
def fresh_accelerator_state(monkeypatch):
    """Accelerate's state is a process-wide singleton that refuses a second mixed-precision setting.
    The trainer scores with the parity reward (an untrained policy earns it half the time)."""
    from accelerate.state import AcceleratorState

    from components.rl import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_bf16_mixed_precision_trains_fp32_master_weights_against_the_trainers_own_old_logprobs(
        fresh_accelerator_state):
    cfg = load_config(overrides=TINY + ["model.mixed_precision=bf16", "rl.iterations=2", "rl.pipo.enabled=true"])
    model, tok = initial_policy(cfg.model, seed=0)
    before = copy.deepcopy(model)
    trainer = RLTrainer(model, tok, sums(40, 1), cfg.rl, 0, Accelerator(cpu=True, mixed_precision="bf16"),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    try:
        metrics = trainer.iteration(0)
    finally:
        trainer.close()
    weights = list(trainer.acc.unwrap_model(trainer.model).parameters())
    assert all(p.dtype == torch.float32 for p in weights)  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(weights, before.parameters()))  # and they trained
    assert torch.isfinite(torch.tensor(metrics["loss/policy"]))
    # the fp32 sampler and the bf16-autocast trainer differ: pi_old is the trainer's, the gap is logged
    assert trainer.recompute_logprobs and metrics["rollout/logprob_diff"] > 0


def test_mixed_precision_needs_fp32_master_weights():
    with pytest.raises(ConfigError, match="model.mixed_precision='bf16' keeps fp32 master weights"):
        load_config(overrides=["model.mixed_precision=bf16", "model.dtype=bfloat16"])


def test_an_unquoted_no_is_the_string_accelerate_expects():
    # YAML reads `--set model.mixed_precision=no` (or an unquoted no in a params file) as false
    assert load_config(overrides=["model.mixed_precision=no"]).model.mixed_precision == "no"


class FakeLibc:
    """mallopt that records its calls and answers like glibc: 1 when the setting is accepted, 0 when not."""

    def __init__(self, answer: int):
        self.answer, self.calls = answer, []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.mark.parametrize("answer, applied", [(1, True), (0, False)])
def test_heap_growth_limit_sets_the_mmap_threshold_and_reports_whether_libc_accepted(monkeypatch, answer, applied):
    import components.infra.runtime as runtime

    libc = FakeLibc(answer)
    monkeypatch.setattr(runtime, "_libc", lambda: libc)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert runtime.limit_heap_growth(4096) is applied
    assert libc.calls == [(-3, 4096)]  # M_MMAP_THRESHOLD in glibc's malloc.h


def test_heap_growth_limit_defers_to_the_users_malloc_setting(monkeypatch):
    import components.infra.runtime as runtime

    libc = FakeLibc(1)
    monkeypatch.setattr(runtime, "_libc", lambda: libc)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert not runtime.limit_heap_growth() and libc.calls == []


@pytest.mark.parametrize("libc", [OSError("no libc"), object()], ids=["no C library", "no mallopt"])
def test_heap_growth_limit_is_a_no_op_without_glibcs_mallopt(monkeypatch, libc):
    import components.infra.runtime as runtime

    def load():
        if isinstance(libc, Exception):
            raise libc
        return libc

    monkeypatch.setattr(runtime, "_libc", load)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert runtime.limit_heap_growth() is False
