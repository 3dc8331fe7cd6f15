"""A bf16 vLLM sampler against the fp32 trainer: the mismatch is measured, and truncated
importance sampling reweights tokens by the capped ratio (its own engine, second in the process)."""

from __future__ import annotations

import math

import pytest

from components.rl import trainer as trainer_module
from tests.support.vllm_trainer import parity_reward, vllm_trainer


@pytest.fixture(scope="module")
def bf16_trainer(tmp_path_factory):
    tr = vllm_trainer(tmp_path_factory.mktemp("policy_bf16"),
                      ["rollout.vllm.dtype=bfloat16", "rollout.importance_sampling.cap=1.5"], seed=1)
    yield tr
    tr.close()


def test_bf16_sampler_mismatch_is_measured_and_capped(bf16_trainer, monkeypatch):
    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    history = [bf16_trainer.iteration(it) for it in range(2)]
    for m in history:
        # bf16 rounding moves log-probs by ~1e-3..1e-2: visible, and far from a broken sync (~1)
        assert 1e-4 < m["rollout/logprob_diff"] < 0.1, m["rollout/logprob_diff"]
        assert m["rollout/logprob_diff_max"] >= m["rollout/logprob_diff"]
        assert m["rollout/is_weight_mean"] <= 1.5
        assert m["rollout/is_weight_mean"] != 1.0
        assert all(math.isfinite(v) for v in m.values()), {k: v for k, v in m.items() if not math.isfinite(v)}
