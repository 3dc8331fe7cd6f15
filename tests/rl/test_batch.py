"""Micro-batches under the optimizer step: the token-budget packing, and gradient accumulation that
gives exactly the whole mini-batch's update for every algorithm's loss aggregation."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator

from components.config import ALGORITHMS, load_config
from components.model.factory import initial_policy
from components.rl.batch import MicroBatches, TrainingBatch, pack_by_tokens
from components.rl.update import PolicyUpdate
from tests.support.rl import TINY, training_batch


def test_packing_respects_the_token_budget_and_row_cap_and_keeps_every_row_once():
    prompt = torch.tensor([5, 3, 8, 2, 6, 4, 7, 1, 3, 5])
    completion = torch.tensor([20, 2, 30, 9, 1, 15, 4, 12, 25, 3])
    rows = torch.tensor([9, 0, 4, 7, 2, 5, 1, 8, 3, 6])  # a shuffled step
    micro = pack_by_tokens(rows, prompt, completion, max_tokens=60, max_rows=3)
    assert sorted(i for m in micro for i in m.tolist()) == list(range(10))
    for m in micro:
        padded = len(m) * (int(prompt[m].max()) + int(completion[m].max()))
        assert padded <= 60 or len(m) == 1
        assert len(m) <= 3
        where = [rows.tolist().index(i) for i in m.tolist()]
        assert where == sorted(where)  # rows keep their step order inside a micro-batch
    assert len(micro) > 1
    # the longest rows first, grouped: row 2 (8 + 30) is in the first micro-batch
    assert 2 in micro[0].tolist()
    # a row longer than the budget goes alone rather than being dropped
    alone = pack_by_tokens(torch.tensor([0, 1]), torch.tensor([50, 1]), torch.tensor([50, 1]), 60, None)
    assert [m.tolist() for m in alone] == [[0], [1]]
    # a budget that holds everything gives one micro-batch in the step's own order
    assert [m.tolist() for m in pack_by_tokens(rows, prompt, completion, 10_000, None)] == [rows.tolist()]


def test_micro_batches_cut_rows_into_optimizer_steps():
    prompt_mask = torch.ones(7, 4, dtype=torch.long)
    completion_mask = torch.ones(7, 6, dtype=torch.long)
    micro = MicroBatches(rows=3, max_tokens=20)  # 2 rows of 10 tokens per micro-batch
    steps = micro.for_base_update(prompt_mask, completion_mask, epochs=2, generator=torch.Generator().manual_seed(0))
    assert len(steps) == 6  # ceil(7 / 3) steps per epoch
    assert [[len(m) for m in step.micro_batches] for step in steps[:3]] == [[2, 1], [2, 1], [1]]
    for epoch in (steps[:3], steps[3:]):  # each epoch is a permutation of every row
        assert sorted(i for step in epoch for m in step.micro_batches for i in m.tolist()) == list(range(7))
        assert sorted(i for step in epoch for i in step.rows.tolist()) == list(range(7))
    assert [len(m) for m in micro.for_one_step(prompt_mask, completion_mask).micro_batches] == [2, 2, 2, 1]
    assert [len(m) for m in micro.for_scoring(prompt_mask, completion_mask)] == [2, 2, 2, 1]
    # Under DDP a process with fewer micro-batches runs as many as the busiest one, some empty.
    busiest = MicroBatches(rows=3, max_tokens=20, global_max=lambda n: max(n, 5))
    assert [len(m) for m in busiest.for_one_step(prompt_mask, completion_mask).micro_batches] == [2, 2, 2, 1, 0]


def test_skipped_rows_stay_in_the_step_but_never_run():
    prompt_mask = torch.ones(7, 4, dtype=torch.long)
    completion_mask = torch.ones(7, 6, dtype=torch.long)
    runs = torch.tensor([True, False, True, False, False, True, False])
    micro = MicroBatches(rows=3, max_tokens=20)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    skipped = micro.for_base_update(prompt_mask, completion_mask, 1, gen(), runs)
    full = micro.for_base_update(prompt_mask, completion_mask, 1, gen())
    # the same rows per step (the shuffle ignores `runs`), only the runnable ones in micro-batches
    assert [s.rows.tolist() for s in skipped] == [s.rows.tolist() for s in full]
    for step in skipped:
        assert sorted(i for m in step.micro_batches for i in m.tolist()) == [i for i in sorted(step.rows.tolist())
                                                                             if runs[i]]
    assert sum(s.rows_run for s in skipped) == 3
    # a step with nothing to run still has one (empty) micro-batch: the optimizer steps on zeros
    nothing = micro.for_one_step(prompt_mask, completion_mask, torch.zeros(7, dtype=torch.bool))
    assert len(nothing.rows) == 7 and [len(m) for m in nothing.micro_batches] == [0]
    assert sorted(i for m in micro.for_scoring(prompt_mask, completion_mask, runs) for i in m.tolist()) == [0, 2, 5]


def _one_step(model, cfg, batch: TrainingBatch, max_tokens: int) -> tuple[torch.nn.Module, int]:
    """The model after one PolicyUpdate step (SGD, lr 1: the weight change IS the gradient) over the whole
    batch, cut into micro-batches of at most max_tokens; returns (model, micro-batch count)."""
    acc = Accelerator(cpu=True)
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model, opt = acc.prepare(model, opt)
    update = PolicyUpdate(model, opt, acc, cfg.rl, chunk_tokens=5, sharded=False)
    micro = MicroBatches(rows=len(batch), max_tokens=max_tokens).for_one_step(batch.prompt_mask,
                                                                            batch.completion_mask)
    assert update.step(batch, micro, lr=1.0, spec=update.base_loss) is not None
    return acc.unwrap_model(model), len(micro.micro_batches)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gradient_accumulation_gives_the_whole_batch_update(algorithm):
    # fp32 throughout; beta > 0 adds the KL term (its own seq-mean), IS weights multiply the loss
    cfg = load_config(overrides=TINY + [f"rl.algorithm={algorithm}", "rl.beta=0.05", "rl.max_grad_norm=1e9",
                                        "rl.max_completion_length=11"])
    model, tok = initial_policy(cfg.model, seed=0)
    batch = training_batch(len(tok))
    whole, n_whole = _one_step(model, cfg, batch, max_tokens=10_000)
    split, n_split = _one_step(model, cfg, batch, max_tokens=40)
    assert n_whole == 1 and n_split >= 4
    moved = max(float((a - b).abs().max()) for a, b in zip(whole.parameters(), model.parameters()))
    gap = max(float((a - b).abs().max()) for a, b in zip(whole.parameters(), split.parameters()))
    assert moved > 1e-3  # the step really changed the weights
    assert gap <= 1e-6, (algorithm, gap, moved)


def _sft_step(model, examples, pad_id: int, max_tokens: int):
    from components.sft.step import SFTStep

    acc = Accelerator(cpu=True)
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model, opt = acc.prepare(model, opt)
    loss = SFTStep(model, opt, acc, pad_id, max_tokens=max_tokens, max_grad_norm=1e9, chunk_tokens=4)(examples)
    return acc.unwrap_model(model), loss


def test_sft_accumulation_gives_the_whole_batch_token_mean_update():
    cfg = load_config(overrides=TINY)
    model, tok = initial_policy(cfg.model, seed=0)
    g = torch.Generator().manual_seed(0)
    examples = []
    for n_prompt, n_target in [(3, 12), (6, 2), (2, 7), (5, 1), (4, 9), (7, 4)]:
        ids = torch.randint(4, len(tok), (n_prompt + n_target,), generator=g).tolist()
        examples.append((ids, [-100] * n_prompt + ids[n_prompt:]))
    whole, loss = _sft_step(model, examples, tok.pad_token_id, max_tokens=10_000)
    split, split_loss = _sft_step(model, examples, tok.pad_token_id, max_tokens=24)
    # the plain definition: cross-entropy over every target token of the batch, right-padded
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), tok.pad_token_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
    assert abs(loss - float(want)) <= 1e-5 and abs(split_loss - float(want)) <= 1e-5
    want.backward()
    reference = [p.detach() - p.grad for p in model.parameters()]  # SGD, lr 1
    for got in (whole, split):
        assert max(float((a - b).abs().max()) for a, b in zip(got.parameters(), reference)) <= 1e-6
