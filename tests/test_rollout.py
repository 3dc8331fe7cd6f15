"""The HF rollout engine: log-probs equal the trainer's forward, EOS and truncation, seeded reproducibility."""

import torch

from components.config import load_config
from components.model.factory import initial_policy
from components.rl.logprobs import completion_logprobs
from components.rollout import HFRolloutEngine


def _engine():
    cfg = load_config()
    model, tok = initial_policy(cfg.model, seed=0)
    return HFRolloutEngine(model, tok), model, tok


def test_rollout_logprobs_match_trainer_forward():
    engine, model, _ = _engine()
    batch = engine.generate(["12+7=", "3+4=", "99+99="], 10, generator=torch.Generator().manual_seed(0))
    logprobs, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    diff = ((logprobs - batch.logprobs) * batch.completion_mask).abs().max()
    assert diff < 1e-4


class _PreferEos(torch.nn.Module):
    """Wraps a policy so EOS is always the most likely next token."""

    def __init__(self, model, eos_id):
        super().__init__()
        self.model, self.eos_id = model, eos_id

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        out.logits[..., self.eos_id] += 1e4
        return out


def test_rollout_stops_at_eos_and_marks_truncation():
    _, model, tok = _engine()
    engine = HFRolloutEngine(_PreferEos(model, tok.eos_token_id), tok)
    batch = engine.generate(["1+1=", "22+33="], 8, greedy=True)
    assert batch.completion_mask.tolist() == [[1], [1]]
    assert batch.truncated.tolist() == [False, False]
    assert batch.texts == ["", ""]


def test_rollout_without_eos_is_truncated_at_max_tokens():
    engine, _, _ = _engine()
    batch = engine.generate(["1+1="] * 4, 3, generator=torch.Generator().manual_seed(1))
    assert batch.completion_ids.shape[1] <= 3
    long = batch.completion_mask.sum(-1) == 3
    assert torch.equal(batch.truncated, long & (batch.completion_ids[:, -1] != engine.tokenizer.eos_token_id))


def test_rollout_is_reproducible_with_a_seeded_generator():
    engine, _, _ = _engine()
    a = engine.generate(["5+5="] * 6, 6, generator=torch.Generator().manual_seed(7))
    b = engine.generate(["5+5="] * 6, 6, generator=torch.Generator().manual_seed(7))
    assert a.texts == b.texts
