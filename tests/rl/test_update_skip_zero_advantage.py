"""Skipping the rows that cannot change the update (advantage 0, beta 0) leaves the update as it was:
the weights after RL iterations equal those of the run that computes every row, for every base
algorithm, with PIPO's PI step active, and under a trainer-side pi_old (the mixed-precision/vLLM path)."""

from __future__ import annotations

import pytest
import torch

from components.config.schema import ALGORITHMS
from components.model.factory import initial_policy
from components.config import load_config
from tests.support.rl import TINY, run_trainer, scored_on_one_thread

ALGO_OVERRIDES = {
    "grpo": [],
    "dr_grpo": ["rl.algorithm=dr_grpo"],
    # dynamic sampling off: otherwise DAPO drops every zero-variance group before the update
    "dapo": ["rl.algorithm=dapo", "rl.dapo.dynamic_sampling=false"],
    "gspo": ["rl.algorithm=gspo"],
}
PIPO_EARLY = ["rl.pipo.enabled=true", "rl.pipo.window=2", "rl.pipo.min_history=1"]


def half_uniform_reward(batch, sources, answers, *_):
    """Prompts whose answer is even always score 0 (a zero-variance group: skipped rows); the others
    score by completion parity, about half right (a group with a real advantage)."""
    return torch.tensor([0.0 if int(a) % 2 == 0 else float(len(t) % 2 == 0) for t, a in zip(batch.texts, answers)])


@pytest.fixture(autouse=True)
def one_thread_rewards(monkeypatch):
    yield from scored_on_one_thread(monkeypatch, half_uniform_reward)


@pytest.fixture(scope="module")
def policy():
    return initial_policy(load_config(overrides=TINY).model, seed=0)


@torch.no_grad()
def _max_gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("pipo", [False, True], ids=["base", "pipo"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_skipping_zero_advantage_rows_leaves_the_weights_unchanged(policy, algorithm, pipo):
    overrides = ALGO_OVERRIDES[algorithm] + (PIPO_EARLY if pipo else ["rl.pipo.enabled=false"])
    skipped_model, skipped = run_trainer(policy, overrides, iterations=3)
    full_model, full = run_trainer(policy, overrides + ["rl.skip_zero_advantage=false"], iterations=3)
    assert any(h["perf/skipped_zero_adv_frac"] > 0 for h in skipped.history), "nothing was skipped: no test"
    assert all(h["perf/skipped_zero_adv_frac"] == 0 for h in full.history)
    if pipo:
        assert any(h.get("perf/pi_skipped_frac", 0) > 0 for h in skipped.history), "the PI step never skipped"
    assert _max_gap(skipped_model, full_model) <= 1e-6
    assert _max_gap(skipped_model, policy[0]) > 1e-4  # and the iterations did train
    for a, b in zip(skipped.history, full.history):  # the same sampled batches, so the same losses
        assert a["reward/mean"] == b["reward/mean"]
        assert a["loss/policy"] == pytest.approx(b["loss/policy"], abs=1e-6)


def test_trainer_side_old_logprobs_are_computed_only_where_they_are_used(policy):
    """With pi_old recomputed by the trainer (rollout.recompute_logprobs, as under mixed precision or
    vLLM), skipped rows are not scored either, and the update is still the full one."""
    overrides = PIPO_EARLY + ["rollout.recompute_logprobs=true", "rollout.importance_sampling.enabled=true"]
    skipped_model, skipped = run_trainer(policy, overrides, iterations=3)
    full_model, _ = run_trainer(policy, overrides + ["rl.skip_zero_advantage=false"], iterations=3)
    assert _max_gap(skipped_model, full_model) <= 1e-6
    for h in skipped.history:  # measured on the rows scored, not diluted by unscored ones
        assert h["rollout/logprob_diff"] < 1e-4 and h["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-3)


def test_with_a_kl_term_every_row_runs(policy):
    _, result = run_trainer(policy, ["rl.beta=0.05", "rl.pipo.enabled=false"], iterations=2)
    assert all(h["perf/skipped_zero_adv_frac"] == 0 for h in result.history)
    assert all(h["actor/kl"] >= 0 for h in result.history)


def test_a_step_with_every_row_skipped_still_moves_adamw_as_a_zero_gradient_does(policy):
    """AdamW moves the weights on a zero gradient (its moments, weight decay): the step with every row
    skipped must still step the optimizer, exactly as the full computation of a zero gradient does."""
    import copy

    from accelerate import Accelerator

    from components.rl.batch import MicroBatches
    from components.rl.update import PolicyUpdate
    from tests.support.rl import training_batch

    cfg = load_config(overrides=TINY)
    live = training_batch(vocab=policy[0].config.vocab_size)
    dead = live.with_advantages(torch.zeros(len(live)))
    models = []
    for skip in (True, False):
        acc = Accelerator(cpu=True)
        model = copy.deepcopy(policy[0])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        model, opt = acc.prepare(model, opt)
        update = PolicyUpdate(model, opt, acc, cfg.rl.model_copy(update={"skip_zero_advantage": skip}),
                              chunk_tokens=16, sharded=False)
        micro = MicroBatches(rows=len(live), max_tokens=60)
        update.step(live, micro.for_one_step(live.prompt_mask, live.completion_mask), 1e-2, update.base_loss)
        plan = micro.for_one_step(dead.prompt_mask, dead.completion_mask, update.rows_to_run(dead.advantages))
        assert plan.rows_run == (0 if skip else len(dead))
        assert update.step(dead, plan, 1e-2, update.base_loss) is not None
        models.append(acc.unwrap_model(model))
    assert _max_gap(*models) <= 1e-7
