"""The improvement probe (held-out prompts, true change, signal agreement), the paired signal and the
noisy verifier, on hand-checked numbers and through the real trainer."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from components.config import load_config
from components.rl import trainer as trainer_module
from components.rl.probe import ProbeTracker, paired_change, probe_size, signal_agreement, split_probe
from components.rl.rewards import VerifierNoise
from components.rl.trainer import RLTrainer
from tests.support.rl import TINY, parity_reward, run_trainer, sums


def test_probe_split_is_disjoint_fixed_and_leaves_the_rest_for_training():
    train, probe = split_probe(100, 10, seed=3)
    assert len(probe) == 10 and len(train) == 90 and not set(train) & set(probe)
    assert split_probe(100, 10, seed=3) == (train, probe)
    assert split_probe(100, 10, seed=4)[1] != probe
    with pytest.raises(ValueError, match="probe.size"):
        split_probe(10, 10, seed=0)


def test_paired_change_and_its_standard_error():
    before = torch.tensor([0.0, 1.0, 1.0, 0.0])
    after = torch.tensor([1.0, 1.0, 1.0, 0.0])  # d = [1, 0, 0, 0]: mean 0.25, sd 0.5, se 0.25
    assert paired_change(before, after) == (pytest.approx(0.25), pytest.approx(0.25))
    # split over two processes, summed: the same numbers
    halves = [(before[:2], after[:2]), (before[2:], after[2:])]
    parts = [[float(len(b)), float((a - b).sum()), float(((a - b) ** 2).sum())] for b, a in halves]
    total = lambda xs: [p0 + p1 for p0, p1 in zip(*parts)]  # noqa: E731
    assert paired_change(*halves[0], total) == (pytest.approx(0.25), pytest.approx(0.25))


def test_signal_agreement_counts_only_changes_above_their_noise():
    signals = [1.0, -2.0, 0.5, 3.0]
    changes = [0.10, -0.20, -0.01, 0.30]
    ses = [0.05, 0.05, 0.05, 0.05]  # the third change is within its noise: not counted for the sign
    a = signal_agreement(signals, changes, ses)
    assert a["sign_agree"] == 1.0 and a["sign_agree_n"] == 3 and a["intervals"] == 4
    # Pearson's r by hand: deviations from the means 0.625 and 0.0475 give S_xy = 1.27625, S_xx = 12.6875,
    # S_yy = 0.131075, r = S_xy / sqrt(S_xx S_yy)
    expected = 1.27625 / math.sqrt(12.6875 * 0.131075)
    assert expected == pytest.approx(0.98966405, abs=1e-8)
    assert a["signal_corr"] == pytest.approx(expected)
    flipped = signal_agreement([-s for s in signals], changes, ses)
    assert flipped["sign_agree"] == 0.0 and flipped["signal_corr"] == pytest.approx(-expected)
    assert math.isnan(signal_agreement([1.0], [0.0], [1.0])["signal_corr"])


def test_tracker_pairs_each_interval_with_the_xi_that_judged_it_and_survives_a_checkpoint():
    t = ProbeTracker()
    assert t.record(torch.tensor([0.0, 0.0, 1.0, 1.0])) == {"pipo/probe_accuracy": 0.5}
    t.observe_xi(1.0)
    t.observe_xi(3.0)
    m = t.record(torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert m["pipo/probe_change"] == pytest.approx(0.25) and m["pipo/probe_signal"] == 2.0
    again = ProbeTracker()
    again.load_state_dict(t.state_dict())
    again.observe_xi(-1.0)
    n = again.record(torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert n["pipo/probe_change"] == pytest.approx(-0.25) and n["pipo/probe_signal"] == -1.0
    assert again.signals == [2.0, -1.0] and again.changes == [pytest.approx(0.25), pytest.approx(-0.25)]


def test_noisy_verifier_flips_the_given_share_reproducibly():
    correct = torch.ones(20000)
    flipped = VerifierNoise(0.1, torch.Generator().manual_seed(0)).flip(correct)
    assert float((flipped == 0).float().mean()) == pytest.approx(0.1, abs=0.01)
    again = VerifierNoise(0.1, torch.Generator().manual_seed(0)).flip(correct)
    assert torch.equal(flipped, again)
    partial = VerifierNoise(1.0, torch.Generator().manual_seed(0)).flip(torch.tensor([0.25, 1.0, 0.0]))
    assert partial.tolist() == [0.75, 0.0, 1.0]


def test_real_scoring_applies_the_noise():
    from components.config import load_config as load
    from components.reward.pool import pool_for
    from components.rl.rewards import score_batch

    cfg = load()
    texts = ["\\boxed{7}"] * 400
    with pool_for(cfg.reward) as scorer:
        clean = score_batch(SimpleNamespace(texts=texts), ["reasoning_gym/chain_sum"] * 400, ["7"] * 400, scorer,
                            cfg.reward)
        noisy = score_batch(SimpleNamespace(texts=texts), ["reasoning_gym/chain_sum"] * 400, ["7"] * 400, scorer,
                            cfg.reward, VerifierNoise(0.25, torch.Generator().manual_seed(1)))
    assert clean.eq(1.0).all() and 0.15 < float((noisy == 0).float().mean()) < 0.35


@pytest.fixture(scope="module")
def policy():
    from components.model.factory import initial_policy

    return initial_policy(load_config(overrides=TINY).model, seed=0)


def test_probe_prompts_are_never_trained_on_and_the_probe_uses_the_clean_verifier(policy):
    """Real scoring with every training verdict inverted (flip_share 1): the untrained policy answers
    nothing right, so its training reward is 1 while the probe, scored clean, reads 0."""
    cfg = load_config(overrides=TINY + ["rl.pipo.probe.every=2", "rl.pipo.probe.size=10",
                                        "rl.verifier_noise.flip_share=1.0"])
    model, tok = policy
    prompts = sums(400, 0).drop_duplicates("prompt").head(40).reset_index(drop=True)
    trainer = RLTrainer(copy.deepcopy(model), tok, prompts, cfg.rl, 0, Accelerator(cpu=True),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    held = set(trainer.probe_set.texts)
    assert len(held) == 10 and not held & set(trainer.texts) and len(trainer.texts) == 30
    seen = []
    real_generate = trainer.engine.generate
    trainer.engine.generate = lambda texts, *a, **kw: seen.append((list(texts), kw.get("greedy"))) or \
        real_generate(texts, *a, **kw)
    history = [trainer.iteration(it) for it in range(4)]
    trainer.close()
    probes = [texts for texts, greedy in seen if greedy]
    assert len(probes) == 2 and all(set(p) == held for p in probes)  # iterations 0 and 2, greedy
    assert all(not set(texts) & held for texts, greedy in seen if not greedy)  # never sampled for training
    assert "pipo/probe_accuracy" in history[0] and "pipo/probe_change" in history[2]
    assert "pipo/probe_accuracy" not in history[1]
    assert all(h["reward/mean"] == 1.0 for h in history)
    assert history[0]["pipo/probe_accuracy"] == 0.0 and history[2]["pipo/probe_accuracy"] == 0.0


def test_paired_signal_resamples_the_previous_prompts_and_uses_their_change(policy, monkeypatch):
    cfg = load_config(overrides=TINY + ["rl.pipo.signal=paired", "rl.pipo.paired_share=0.5"])
    model, tok = policy
    trainer = RLTrainer(copy.deepcopy(model), tok, sums(40, 0), cfg.rl, 0, Accelerator(cpu=True),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    trainer.pipo.state.cached_prompts = torch.tensor([3, 5, 7, 9])
    trainer.pipo.state.cached_group_rewards = torch.tensor([0.0, 0.25, 0.5, 0.5], dtype=torch.float64)
    asked = []

    def resample(prompts, generator, noise):  # after the update: group means 0.5 and 1.0 on prompts 3, 5
        asked.append(prompts.tolist())
        return None, torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0]]), 0.0

    trainer.sample_groups = resample
    s = trainer.pipo.paired(it=3)
    trainer.close()
    assert asked == [[3, 5]]  # half of B_{t-1}'s groups
    # d = [0.5, 0.75]: mean 0.625, sd 0.1768, se 0.125 -> xi 5
    assert (s.mu_his, s.mu_t) == (pytest.approx(0.125), pytest.approx(0.75))
    assert s.sigma_his == pytest.approx(0.125) and s.xi == pytest.approx(5.0)


def test_a_run_with_probe_and_paired_signal_resumes_exactly(policy, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    overrides = ["rl.pipo.enabled=true", "rl.checkpoint_every=3", "rl.pipo.signal=paired", "rl.pipo.probe.every=2",
                 "rl.pipo.probe.size=8"]
    full_model, full = run_trainer(policy, overrides, 6, checkpoint_dir=tmp_path / "a")
    run_trainer(policy, overrides, 3, checkpoint_dir=tmp_path / "b")
    resumed_model, resumed = run_trainer(policy, overrides, 6, checkpoint_dir=tmp_path / "b", resume=True)
    for a, b in zip(full.history[3:], resumed.history):
        stable = {k: v for k, v in a.items() if not k.startswith("perf/")}
        assert stable == {k: b[k] for k in stable}
    assert full.summary == resumed.summary and full.summary["pipo/intervals"] == 2
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


def test_a_null_probe_size_is_256_or_a_fifth_of_a_smaller_split_and_too_few_prompts_are_refused():
    assert probe_size(None, 12000) == 256 and probe_size(None, 1280) == 256 and probe_size(None, 1000) == 200
    assert probe_size(None, 48) == 9 and probe_size(40, 48) == 40
    assert len(split_probe(48, None, seed=0)[1]) == 9
    # the sweep's units were drawn with size 256: the automatic size holds out the same prompts
    assert split_probe(12000, None, seed=2) == split_probe(12000, 256, seed=2)
    with pytest.raises(ValueError, match="has 9 prompts: too few to hold out a probe"):
        probe_size(None, 9)

