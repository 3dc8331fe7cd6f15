"""Completion log-probs without the vocabulary blow-up equal the plain formula: values, entropy and
gradients, for every way of reaching the LM head (the head module in chunks, the model's own logits,
a head this code cannot trust, a LoRA-wrapped model)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from components.rl.logprobs import completion_logprobs, lm_head_of, reference_completion_logprobs

VOCAB = 3000


def _qwen2(tied: bool, seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=128,
                      tie_word_embeddings=tied)
    return Qwen2ForCausalLM(cfg).float()


def _inputs(seed: int = 1):
    """Left-padded prompts, right-padded completions of different lengths (one of a single token)."""
    g = torch.Generator().manual_seed(seed)
    b, lp, lc = 5, 6, 9
    prompt_mask = (torch.arange(lp)[None] >= torch.tensor([0, 2, 3, 1, 4])[:, None]).long()
    completion_mask = (torch.arange(lc)[None] < torch.tensor([9, 1, 5, 7, 3])[:, None]).long()
    return (torch.randint(0, VOCAB, (b, lp), generator=g) * prompt_mask, prompt_mask,
            torch.randint(0, VOCAB, (b, lc), generator=g), completion_mask)


def _masked(x, mask):
    return x * mask


@pytest.mark.parametrize("head", ["tied", "untied", "bias"])
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_chunked_logprobs_equal_the_plain_formula_with_gradients(head, chunk):
    # chunks of 1 and 7 positions take the fused linear log-prob (one block in backward); 1024 is one
    # plain block (a 3 k vocabulary has no memory to save)
    model = _qwen2(tied=head == "tied")
    if head == "bias":
        model.lm_head = torch.nn.Linear(64, VOCAB, bias=True)
    p_ids, p_mask, c_ids, c_mask = _inputs()
    want_lp, want_ent = reference_completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 0.7)
    (_masked(want_lp, c_mask).sum()).backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    got_lp, got_ent = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 0.7, chunk_tokens=chunk,
                                          min_block_logits=0 if chunk < 1024 else 1 << 22)
    (_masked(got_lp, c_mask).sum()).backward()
    assert lm_head_of(model) is model.get_output_embeddings()  # the memory-saving path was taken
    assert (_masked(got_lp - want_lp, c_mask)).abs().max() <= 1e-5
    assert (_masked(got_ent - want_ent, c_mask)).abs().max() <= 1e-5
    assert float(got_lp[c_mask == 0].abs().max()) == 0.0  # padding scores exactly 0
    for got, want in zip((p.grad for p in model.parameters()), want_grads):
        assert (got - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))


def test_scoring_through_the_models_own_logits_is_equal_too():
    # lm_head=None: sharded models (FSDP / DeepSpeed) score through the forward's logits
    model = _qwen2(tied=True)
    p_ids, p_mask, c_ids, c_mask = _inputs(seed=2)
    want, _ = reference_completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0)
    got, ent = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0, lm_head=None, chunk_tokens=4,
                                   entropy=False, min_block_logits=0)
    assert ent is None
    assert _masked(got - want, c_mask).abs().max() <= 1e-5


class _ScaledLogits(Qwen2ForCausalLM):
    """A model whose logits are not lm_head(last hidden state) (as with soft-capped or scaled logits)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 2.0
        return out


def test_a_head_that_does_not_reproduce_the_logits_falls_back_to_them():
    torch.manual_seed(0)
    model = _ScaledLogits(_qwen2(tied=True).config).float()
    assert lm_head_of(model) is None
    p_ids, p_mask, c_ids, c_mask = _inputs(seed=3)
    want, _ = reference_completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0)
    got, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0)
    assert _masked(got - want, c_mask).abs().max() <= 1e-5


def test_a_lora_wrapped_policy_scores_the_same_as_its_merged_weights():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_qwen2(tied=False), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj",
                                                                                                 "lm_head"]))
    with torch.no_grad():  # non-zero adapters, so the LoRA path matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    p_ids, p_mask, c_ids, c_mask = _inputs(seed=4)
    got, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0, chunk_tokens=3, min_block_logits=0)
    want, _ = reference_completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0)
    assert _masked(got - want, c_mask).abs().max() <= 1e-5
    merged, _ = reference_completion_logprobs(model.merge_and_unload(), p_ids, p_mask, c_ids, c_mask, 1.0)
    assert _masked(got - merged, c_mask).abs().max() <= 1e-4
