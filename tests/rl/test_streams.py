"""Named random streams (components/rl/streams.py): independent across purposes, iterations and ranks,
and the verifier noise no longer replays the uniforms that sampled the rollout."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from accelerate import Accelerator

from components.config import load_config
from tests.support.rl import TINY, parity_reward, sums


def first_draws(gen: torch.Generator, n: int = 2) -> tuple[int, ...]:
    return tuple(torch.randint(0, 2**62, (n,), generator=gen).tolist())


def old_seed(seed: int, it: int, rank: int, world: int = 1, offset: int = 0) -> int:
    """The arithmetic the trainer used before: rollout +0, probe +7, paired +13, noise with its own seed."""
    return seed * 1_000_003 + it * world + rank + offset


def test_streams_of_different_purposes_iterations_and_ranks_are_distinct():
    from components.rl import streams

    keys = list(itertools.product(streams.PURPOSES, (0, 1), range(30), range(4)))
    draws = {first_draws(streams.torch_stream(p, s, it, r)) for p, s, it, r in keys}
    assert len(draws) == len(keys)
    numpy_draws = {tuple(streams.numpy_stream(p, s, it, r).integers(0, 2**62, 2)) for p, s, it, r in keys}
    assert len(numpy_draws) == len(keys)


@pytest.mark.parametrize("old_a, old_b, new_a, new_b", [
    # verifier noise (its seed 0 = the run's seed 0) used the rollout's formula: the same generator
    ((0, 5, 0, 1, 0), (0, 5, 0, 1, 0), ("verifier_noise", 0, 5, 0), ("rollout", 0, 5, 0)),
    # the probe of iteration t (+7) replayed the rollout of iteration t + 7, the paired re-sample (+13) of t + 13
    ((0, 3, 0, 1, 7), (0, 10, 0, 1, 0), ("probe", 0, 3, 0), ("rollout", 0, 10, 0)),
    ((0, 3, 0, 1, 13), (0, 16, 0, 1, 0), ("paired_resample", 0, 3, 0), ("rollout", 0, 16, 0)),
    # the engine's seed (seed * 1_000_003 + rank) was iteration 0's rollout seed
    ((0, 0, 1, 2, 0), (0, 0, 1, 2, 0), ("engine", 0, 0, 1), ("rollout", 0, 0, 1)),
])
def test_the_old_colliding_pairs_are_independent_now(old_a, old_b, new_a, new_b):
    from components.rl import streams

    assert old_seed(*old_a) == old_seed(*old_b)  # the collision, as it was
    assert streams.seed_int(*new_a) != streams.seed_int(*new_b)
    assert first_draws(streams.torch_stream(*new_a)) != first_draws(streams.torch_stream(*new_b))


def test_an_engine_seed_fits_numpys_legacy_seeding():
    """vLLM seeds numpy's legacy RNG with its seed, which refuses anything from 2**32 on."""
    import numpy as np

    from components.rl import streams

    seeds = [streams.seed_int(streams.ENGINE, s, 0, r, bits=31) for s in (0, 1, 2**32 - 1) for r in range(8)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**31 for s in seeds)
    np.random.seed(seeds[-1])


def test_an_unknown_purpose_is_refused():
    from components.rl import streams

    with pytest.raises(ValueError, match="unknown random stream purpose 'rollouts'"):
        streams.torch_stream("rollouts", 0)


def test_noise_flips_are_uncorrelated_with_the_rollouts_sampling_uniforms(monkeypatch):
    """Through the trainer: with rl.verifier_noise.seed == seed (both 0), the generator that sampled an
    iteration's completions and the one that drew its verdict flips must not share their uniforms. The
    old derivation gave both the same state: correlation exactly 1."""
    from components.model.factory import initial_policy
    from components.rl import trainer as trainer_module
    from components.rl.trainer import RLTrainer

    states = {}

    def noisy(batch, sources, answers, scorer, reward, noise=None):
        states.setdefault("noise", noise.generator.get_state())
        return noise.flip(parity_reward(batch, sources, answers))

    monkeypatch.setattr(trainer_module, "score_batch", noisy)
    cfg = load_config(overrides=TINY + ["rl.verifier_noise.flip_share=0.3", "rl.verifier_noise.seed=0"])
    model, tok = initial_policy(cfg.model, seed=0)
    trainer = RLTrainer(copy.deepcopy(model), tok, sums(50, 0), cfg.rl, 0, Accelerator(cpu=True),
                        rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model)
    real_generate = trainer.engine.generate

    def generate(*args, generator=None, **kwargs):
        states.setdefault("rollout", generator.get_state())
        return real_generate(*args, generator=generator, **kwargs)

    trainer.engine.generate = generate
    try:
        trainer.iteration(0)
    finally:
        trainer.close()
    n = 20_000
    uniforms = []
    for name in ("rollout", "noise"):
        gen = torch.Generator()
        gen.set_state(states[name])
        uniforms.append(torch.rand(n, generator=gen, dtype=torch.float64))
    corr = float(torch.corrcoef(torch.stack(uniforms))[0, 1])
    assert abs(corr) < 4 / n**0.5, corr  # 4 standard errors of a zero correlation
