"""PIPO as an object of its own: built from its constructor arguments (no RLTrainer), called at its two
points of an iteration, on a tiny policy with hand-checked decisions and coefficients."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from components.config import load_config
from components.model.factory import initial_policy
from components.rl.batch import MicroBatches, TrainingBatch
from components.rl.logprobs import completion_logprobs
from components.rl.pipo_plugin import PIPO
from components.rl.update import PolicyUpdate
from tests.support.rl import TINY

LR, PI_LR_SCALE, NEG_SCALE = 0.05, 0.5, 0.1


def build(overrides=()):
    """PIPO over a real PolicyUpdate of a tiny policy, and one group of 4 hand-made responses."""
    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.pipo.joint=false", "rl.pipo.window=2",
                                        f"rl.lr={LR}", f"rl.pipo.pi_lr_scale={PI_LR_SCALE}",
                                        f"rl.pipo.neg_scale={NEG_SCALE}", *overrides])
    torch.manual_seed(0)
    model, _ = initial_policy(cfg.model, seed=0)
    acc = Accelerator(cpu=True)
    model, optimizer = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=LR))
    update = PolicyUpdate(model, optimizer, acc, cfg.rl, chunk_tokens=64, sharded=False)
    pipo = PIPO(cfg.rl.pipo, update=update, micro=MicroBatches(rows=64, max_tokens=4096), lr=LR, ppo_epochs=1,
                group_size=4, authors_surrogate="authors")
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (4, 3))
    completion = torch.randint(3, vocab, (4, 5))
    ones_p, ones_c = torch.ones_like(prompt), torch.ones_like(completion)
    with torch.no_grad():
        old, _ = completion_logprobs(model, prompt, ones_p, completion, ones_c)
    batch = TrainingBatch(prompt_ids=prompt, prompt_mask=ones_p, completion_ids=completion, completion_mask=ones_c,
                          loss_mask=ones_c.float(), old_logprobs=old, advantages=torch.tensor([1.0, 1.0, -1.0, -1.0]))

    def seq_logprob():
        with torch.no_grad():
            return completion_logprobs(model, prompt, ones_p, completion, ones_c)[0].sum(-1)

    return pipo, update, batch, seq_logprob


def spy_steps(update):
    seen = []
    real = update.step

    def step(batch, rows, lr, spec):
        seen.append((batch.advantages.clone(), lr, spec))
        return real(batch, rows, lr, spec)

    update.step = step
    return seen


def test_pipo_waits_for_its_window_then_reinforces_a_helpful_update():
    pipo, update, batch, seq_logprob = build()
    steps = spy_steps(update)
    pipo.after_update(0.5, batch, torch.tensor([0]), torch.tensor([0.5], dtype=torch.float64))  # H = [0.5]
    report = pipo.before_update(0.7, 1)  # one mean in H, min_history = window = 2: not active
    assert report.signal is None and not steps
    pipo.after_update(0.7, batch, torch.tensor([0]), torch.tensor([0.5], dtype=torch.float64))  # H = [0.5, 0.7]
    before = seq_logprob()
    report = pipo.before_update(0.9, 2)
    # mu_his 0.6, sigma_his (ddof 0) 0.1 -> xi = 3 = phi; a = 4 A / (sum |A| + 1e-6) = A / (1 + 2.5e-7)
    s = report.signal
    assert (s.mu_his, s.sigma_his, s.xi, s.phi) == pytest.approx((0.6, 0.1, 3.0, 3.0))
    assert len(steps) == 1 and report.optimizer_steps == 1 and (report.rows, report.rows_run) == (4, 4)
    coefficients, lr, spec = steps[0]
    assert torch.allclose(coefficients, torch.tensor([3.0, 3.0, -3.0, -3.0]) / (1 + 2.5e-7))
    assert lr == pytest.approx(LR * PI_LR_SCALE) and spec == update.base_loss
    delta = seq_logprob() - before
    assert (delta[:2] > 0).all() and (delta[2:] < 0).all(), delta  # the previous update, re-applied


def test_pipo_suppresses_a_harmful_update_damped_by_lambda():
    pipo, update, batch, seq_logprob = build()
    steps = spy_steps(update)
    for mu in (0.5, 0.7):
        pipo.after_update(mu, batch, torch.tensor([0]), torch.tensor([0.5], dtype=torch.float64))
    before = seq_logprob()
    report = pipo.before_update(0.3, 2)  # xi = (0.3 - 0.6) / 0.1 = -3 -> phi = lambda xi = -0.3
    assert report.signal.xi == pytest.approx(-3.0) and report.signal.phi == pytest.approx(-0.3)
    assert torch.allclose(steps[0][0], torch.tensor([-0.3, -0.3, 0.3, 0.3]) / (1 + 2.5e-7))
    delta = seq_logprob() - before
    assert (delta[:2] < 0).all() and (delta[2:] > 0).all(), delta  # pushed against it


def test_pipo_takes_no_step_when_lambda_zeroes_a_harmful_update():
    pipo, update, batch, seq_logprob = build(["rl.pipo.neg_scale=0.0"])
    steps = spy_steps(update)
    for mu in (0.5, 0.7):
        pipo.after_update(mu, batch, torch.tensor([0]), torch.tensor([0.5], dtype=torch.float64))
    before = seq_logprob()
    report = pipo.before_update(0.3, 2)
    assert report.signal.xi < 0 and not steps and report.optimizer_steps == 0
    assert torch.equal(seq_logprob(), before)
