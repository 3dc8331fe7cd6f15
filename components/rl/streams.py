"""Named random streams: every random draw of RL, PIPO, the probe, verifier noise and prompt sampling
comes from a generator derived here from (purpose, seed, iteration, rank).

The derivation is numpy's SeedSequence over [hash of the purpose's name, seed, iteration, rank], so two
streams that differ in any of the four are independent (statistically, not merely offset): the verifier
noise of iteration t does not reuse the uniforms that sampled B_t's first tokens, and the probe of
iteration t does not replay the rollout of iteration t + 7, as arithmetic on one seed did. Nothing is
stateful between iterations, so a resumed run derives exactly the streams it would have used.
Distributed runs: a purpose that must agree on every process (the prompt order, the probe split) is
drawn with rank 0 everywhere; the others take the process's rank.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

# In every run fingerprint: a checkpoint of another derivation would resume on other streams.
DERIVATION = "seedsequence-v1"

# purposes: one string per use; a stream for any other name is refused (a typo would share nothing, silently)
ROLLOUT = "rollout"  # B_t's completions, DAPO's refill rounds included (per rank)
UPDATE_SHUFFLE = "update_shuffle"  # the base update's mini-batch order (per rank)
PI_SHUFFLE = "pi_shuffle"  # PIPO's PI update order with pi_steps match_base (per rank)
PAIRED_RESAMPLE = "paired_resample"  # PIPO's paired signal: B_{t-1}'s prompts sampled again (per rank)
VERIFIER_NOISE = "verifier_noise"  # rl.verifier_noise's flips of the rollout's verdicts (seed: its own)
PAIRED_NOISE = "paired_noise"  # the same flips for the paired re-sample's verdicts
PROBE = "probe"  # the probe's samples (rl.pipo.probe.k > 1; greedy draws nothing)
PROBE_SPLIT = "probe_split"  # which RL prompts are held out for the probe (every rank alike)
PROMPT_ORDER = "prompt_order"  # each epoch's prompt permutation, iteration = epoch (every rank alike)
ENGINE = "engine"  # the vLLM engine's own seed (per rank)
PIPO_BLIND = "pipo_blind"  # rl.pipo.blind: the PI step's random sign of xi (every rank alike)
PURPOSES = (ROLLOUT, UPDATE_SHUFFLE, PI_SHUFFLE, PAIRED_RESAMPLE, VERIFIER_NOISE, PAIRED_NOISE, PROBE, PROBE_SPLIT,
            PROMPT_ORDER, ENGINE, PIPO_BLIND)


def seed_sequence(purpose: str, seed: int, iteration: int = 0, rank: int = 0) -> np.random.SeedSequence:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random stream purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    return np.random.SeedSequence([key, seed, iteration, rank])


def seed_int(purpose: str, seed: int, iteration: int = 0, rank: int = 0, bits: int = 63) -> int:
    """A `bits`-bit seed of the stream (63 for torch generators; 31 for libraries that seed numpy's legacy
    RNG with it, which takes no more than 32 bits: vLLM)."""
    low, high = seed_sequence(purpose, seed, iteration, rank).generate_state(2, np.uint32)
    return (int(high) << 32 | int(low)) >> (64 - bits)


def torch_stream(purpose: str, seed: int, iteration: int = 0, rank: int = 0) -> torch.Generator:
    """A CPU torch.Generator of the stream."""
    return torch.Generator().manual_seed(seed_int(purpose, seed, iteration, rank))


def numpy_stream(purpose: str, seed: int, iteration: int = 0, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(purpose, seed, iteration, rank))
