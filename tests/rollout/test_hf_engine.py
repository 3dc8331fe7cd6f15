"""The HF rollout engine: log-probs equal the trainer's forward, stop ids (end of turn, EOS) and truncation,
seeded reproducibility, rendered prompts, last-position-only prefill logits."""

import pytest
import torch

from components.config import load_config
from components.model.chat import render_prompt
from components.model.factory import initial_policy, load_policy
from components.model.local_qwen2 import IM_END, build_local_qwen2
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
        self.config = model.config  # what the engine sizes its KV cache from, as a peft wrapper exposes it

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


def _boost(model, token_id: int):
    """Make `token_id` the most likely next token everywhere (a hook on the LM head's output)."""

    def hook(module, inputs, output):
        output[..., token_id] += 1e4
        return output

    return model.lm_head.register_forward_hook(hook)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """The local Qwen2 test model: ChatML, <|im_end|> ends a turn but is not the tokenizer's eos."""
    return load_policy(build_local_qwen2(tmp_path_factory.mktemp("qwen"), "test"))


def test_rollout_stops_at_an_end_of_turn_id_only_in_generation_config(qwen):
    model, tok = qwen
    im_end = tok.convert_tokens_to_ids(IM_END)
    assert im_end != tok.eos_token_id and im_end in model.generation_config.eos_token_id
    prompts = [render_prompt(tok, p, None, "auto") for p in ("1+2=", "30-4=")]
    handle = _boost(model, im_end)
    try:
        batch = HFRolloutEngine(model, tok).generate(prompts, 6, greedy=True)
    finally:
        handle.remove()
    assert batch.completion_ids.tolist() == [[im_end], [im_end]]
    assert batch.completion_mask.tolist() == [[1], [1]] and batch.truncated.tolist() == [False, False]


def test_rollout_without_stop_ids_samples_every_row_to_full_length():
    _, model, tok = _engine()
    handle = _boost(model, tok.eos_token_id)
    try:
        batch = HFRolloutEngine(model, tok, stop_ids=[]).generate(["<s>1+1=", "<s>22+33="], 5, greedy=True)
    finally:
        handle.remove()
    assert batch.completion_ids.tolist() == [[tok.eos_token_id] * 5] * 2
    assert batch.completion_mask.sum(-1).tolist() == [5, 5] and batch.truncated.tolist() == [True, True]


def test_rollout_tokenizes_rendered_prompts_without_adding_special_tokens():
    engine, _, tok = _engine()
    batch = engine.generate(["<s>12+7="], 2, greedy=True)
    assert batch.prompt_ids.tolist() == [tok("12+7=")["input_ids"]]  # one BOS, as before chat templates


def test_prefill_computes_logits_for_the_last_position_only():
    engine, model, _ = _engine()
    positions = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: positions.append(i[0].shape[1]))
    try:
        engine.generate(["<s>12+7=", "<s>99+99="], 3, greedy=True)
    finally:
        handle.remove()
    assert positions and set(positions) == {1}  # never the prompt's [B, Lp, V] logits


def _stop_often(model, eos_id: int, bonus: float = 3.0):
    """Raise EOS's logit so rows stop at scattered steps (about 1 in 6 per step)."""
    def hook(module, inputs, output):
        output[..., eos_id] += bonus
        return output
    return model.lm_head.register_forward_hook(hook)


def test_finished_rows_leave_the_batch_without_changing_any_row():
    _, model, tok = _engine()
    prompts = [f"<s>{a}+{b}=" for a in range(8) for b in range(8)]
    rows_per_step: dict[bool, list[int]] = {True: [], False: []}
    out = {}
    for mode in (True, False):
        handles = [_stop_often(model, tok.eos_token_id),
                   model.lm_head.register_forward_hook(lambda m, i, o: rows_per_step[mode].append(i[0].shape[0]))]
        try:
            out[mode] = HFRolloutEngine(model, tok, compact=mode).generate(
                prompts, 20, generator=torch.Generator().manual_seed(3))
        finally:
            for h in handles:
                h.remove()
    compact, full = out[True], out[False]
    lengths = compact.completion_mask.sum(-1)
    assert lengths.min() < lengths.max()  # rows did stop at different steps
    assert min(rows_per_step[True]) < len(prompts)  # the compacting run shrank its batch
    assert set(rows_per_step[False]) == {len(prompts)}  # the other one never did
    assert torch.equal(compact.completion_ids, full.completion_ids)
    assert torch.equal(compact.completion_mask, full.completion_mask)
    assert torch.equal(compact.truncated, full.truncated)
    assert torch.allclose(compact.logprobs, full.logprobs, atol=1e-5)
    assert compact.texts == full.texts


def test_inverse_cdf_sampling_draws_each_token_with_its_probability():
    from components.rollout.hf_engine import sample_inverse_cdf

    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 1.0, 0.0]])
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    draws = sample_inverse_cdf(probs[:1].expand(len(u), 4), u)
    freq = torch.bincount(draws, minlength=4).float() / len(u)
    assert torch.allclose(freq, probs[0], atol=0.005) and freq[1] == 0
    # the ends of [0, 1) never land on a zero-probability token
    edges = torch.tensor([0.0, 1.0 - 1e-7])
    assert sample_inverse_cdf(probs[1:].expand(2, 4), edges).tolist() == [2, 2]
    assert sample_inverse_cdf(probs[:1].expand(2, 4), edges).tolist() == [0, 3]


def test_decode_steps_use_eager_attention_and_the_model_gets_sdpa_back():
    engine, model, _ = _engine()
    assert model.config._attn_implementation == "sdpa"
    seen: list[str] = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(model.config._attn_implementation))
    try:
        engine.generate(["<s>12+7=", "<s>99+99="], 4, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert seen[0] == "sdpa" and set(seen[1:]) == {"eager"}  # prefill, then one-token steps
    assert model.config._attn_implementation == "sdpa"  # the trainer's forward passes keep SDPA
