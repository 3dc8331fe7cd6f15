"""Run under `accelerate launch` with 2 processes (gloo on CPU): PIPO training across ranks.

Each rank writes to OUT_DIR/rank{r}.json: its per-iteration metrics, a weight checksum after every
iteration, the global-mean check, and the gap between one data-parallel update on a fixed global
batch and the same update computed by a single process on the whole batch.
"""

import copy
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from components.config import load_config  # noqa: E402
from components.model.factory import initial_policy  # noqa: E402
from components.rl import streams  # noqa: E402
from components.rl import trainer as trainer_module  # noqa: E402
from components.rl.advantages import ADVANTAGES  # noqa: E402
from components.rl.batch import TrainingBatch  # noqa: E402
from components.rl.collectives import global_mean  # noqa: E402
from components.rl.logprobs import completion_logprobs  # noqa: E402
from components.rl.trainer import RLTrainer, train_rl  # noqa: E402
from tests.support.rl import TINY, parity_reward, sums  # noqa: E402


def checksum(model) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def update_gap(acc, cfg, model, tok, idle_rank: int | None = None) -> dict[str, float]:
    """One base update on a fixed global batch: this rank's shard under DDP vs one process on all of it.
    idle_rank: that rank's groups get advantage 0, so it skips every row while the other runs some."""
    world, rank = acc.num_processes, acc.process_index
    trainer = RLTrainer(copy.deepcopy(model), tok, sums(64, 2), cfg.rl, 0, acc, rollout=cfg.rollout, reward=cfg.reward,
                        model_cfg=cfg.model)
    single = copy.deepcopy(model)
    G = cfg.rl.num_generations
    prompts = [p for p in sums(64, 2)["prompt"].tolist()[:8] for _ in range(G)]
    # identical weights and generator on every rank: every rank builds the same global batch
    full = trainer.engine.generate(prompts, cfg.rl.max_completion_length, generator=torch.Generator().manual_seed(5))
    adv = ADVANTAGES["group_relative"](parity_reward(full, None, None).view(-1, G), scale_rewards=True).reshape(-1)
    groups = torch.arange(len(prompts) // G)[rank::world]  # sharded by prompt group, as the trainer does
    mine = (groups[:, None] * G + torch.arange(G)).reshape(-1)
    if idle_rank is not None:
        idle = torch.arange(len(prompts) // G)[idle_rank::world]
        adv.view(-1, G)[idle] = 0.0
    shard = full.select(mine)
    shard_batch = TrainingBatch(prompt_ids=shard.prompt_ids, prompt_mask=shard.prompt_mask,
                                completion_ids=shard.completion_ids, completion_mask=shard.completion_mask,
                                loss_mask=shard.completion_mask.float(), old_logprobs=shard.logprobs,
                                advantages=adv[mine])
    # the trainer's own plan: this rank's zero-advantage rows are skipped (ranks skip different counts)
    rows = trainer.micro.for_one_step(shard.prompt_mask, shard.completion_mask,
                                      trainer.update.rows_to_run(shard_batch.advantages))
    assert rows.rows_run == int((adv[mine] != 0).sum())
    assert bool((adv == 0).any()), "no zero-advantage row in the batch: the check would not cover skipping"
    trainer.update.step(shard_batch, rows, cfg.rl.lr, trainer.update.base_loss)

    opt = torch.optim.AdamW(single.parameters(), lr=cfg.rl.lr, weight_decay=cfg.rl.weight_decay)
    lp, _ = completion_logprobs(single, full.prompt_ids, full.prompt_mask, full.completion_ids, full.completion_mask)
    spec = trainer.update.base_loss
    loss, _ = trainer.update.loss_fn(lp, full.logprobs, adv, full.completion_mask.float(), eps_low=spec.eps_low,
                                     eps_high=spec.eps_high, max_len=cfg.rl.max_completion_length,
                                     surrogate="standard")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(single.parameters(), cfg.rl.max_grad_norm)
    ddp_grads = {n: p.grad for n, p in acc.unwrap_model(trainer.model).named_parameters()}
    grad_gap = max(float((ddp_grads[n] - p.grad).abs().max()) for n, p in single.named_parameters())
    opt.step()
    weight_gap = max(float((a - b).abs().max()) for a, b in
                     zip(acc.unwrap_model(trainer.model).parameters(), single.parameters()))
    trainer.close()
    return {"grad_gap": grad_gap, "weight_gap": weight_gap,
            "grad_scale": max(float(p.grad.abs().max()) for p in single.parameters()),
            "loss_tokens": float(shard_batch.loss_mask.sum())}


def main(out_dir: Path) -> None:
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    # Each rank holds different rewards: the global mean must use both (5/8, not 1/4 or 1).
    local = torch.tensor([1.0, 0.0, 0.0, 0.0]) if rank == 0 else torch.tensor([1.0, 1.0, 1.0, 1.0])
    mean = global_mean(acc, local)

    trainer_module.score_batch = parity_reward
    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.iterations=4"])
    model, tok = initial_policy(cfg.model, seed=0)
    gap = update_gap(acc, cfg, model, tok)
    # DAPO's token mean: the ranks' shards hold different token counts, so only a denominator summed
    # over both ranks gives the whole batch's update (a per-rank token mean would not).
    dapo_cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.algorithm=dapo"])
    gap.update({f"dapo_{k}": v for k, v in update_gap(acc, dapo_cfg, model, tok).items()})
    # one rank with nothing to run (every advantage 0) while the other runs rows: the step must still
    # all-reduce (a backward outside DDP's forward would not) and equal the one-process update
    gap.update({f"idle_{k}": v for k, v in update_gap(acc, cfg, model, tok, idle_rank=1).items()})
    checksums = []
    model, result = train_rl(model, tok, sums(200, 1), cfg.rl, 0, acc, rollout=cfg.rollout, reward=cfg.reward,
                             model_cfg=cfg.model, log_metrics=lambda m, step: checksums.append(checksum(model)))
    history = [{k: v for k, v in h.items() if not k.startswith("perf/")} for h in result.history]

    # Exact resume under DDP: 2 iterations with a checkpoint, then a fresh trainer resumes to 4.
    ckpt = out_dir / "ckpt"
    short = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.iterations=2", "rl.checkpoint_every=2"])
    first, _ = initial_policy(cfg.model, seed=0)
    _, part1 = train_rl(first, tok, sums(200, 1), short.rl, 0, acc, rollout=short.rollout, reward=short.reward,
                        model_cfg=short.model,
                        checkpoint_dir=ckpt)
    second, _ = initial_policy(cfg.model, seed=0)
    second, part2 = train_rl(second, tok, sums(200, 1), cfg.rl, 0, acc, rollout=cfg.rollout, reward=cfg.reward,
                             model_cfg=cfg.model, checkpoint_dir=ckpt, resume=True)
    resumed = [{k: v for k, v in h.items() if not k.startswith("perf/")} for h in part1.history + part2.history]
    guard = guard_run(acc, tok, out_dir)
    (out_dir / f"rank{rank}.json").write_text(json.dumps({
        "mean": mean, "history": history, "checksums": checksums, "checksum": checksum(model), **gap,
        "resumed_from": part2.resumed_from, "resumed_history": resumed, "resumed_checksum": checksum(second),
        **guard}))


def guard_run(acc, tok, out_dir: Path) -> dict:
    """rl.guard under DDP with a scripted probe: at iteration 2 only rank 0's share of the probe prompts
    collapses. The decision reads sums over both ranks, so both roll back; alone, rank 1 would not."""
    rank = acc.process_index
    seeds = {streams.torch_stream(streams.PROBE, 0, it, rank).initial_seed(): it for it in range(8)}

    def score(engine, scorer, probe_set, cfg, generator):
        collapsed = rank == 0 and seeds[generator.initial_seed()] == 2
        return torch.full((len(probe_set.texts),), 0.0 if collapsed else 1.0, dtype=torch.float64)

    trainer_module.score_probe = score
    # one rank's 4 of 8 prompts lost: 2.65 paired SE, a drop at drop_se 2
    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.iterations=4", "rl.guard.enabled=true",
                                        "rl.guard.drop_se=2.0", "rl.guard.every=2", "rl.pipo.probe.size=8"])
    model, _ = initial_policy(cfg.model, seed=0)
    model, result = train_rl(model, tok, sums(200, 1), cfg.rl, 0, acc, rollout=cfg.rollout, reward=cfg.reward,
                             model_cfg=cfg.model, checkpoint_dir=out_dir / "guard")
    return {"guard_history": [{k: v for k, v in h.items() if k.startswith("guard/")} for h in result.history],
            "guard_output": result.guard, "guard_checksum": checksum(model)}


if __name__ == "__main__":
    main(Path(sys.argv[1]))
