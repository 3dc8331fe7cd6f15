"""A non-finite loss on ONE of two DDP processes (gloo on CPU): every process skips that optimizer
step together and counts it, nobody waits forever in the gradient all-reduce, and the weights stay
identical across processes.

The test launches this file as the worker (`accelerate launch ... this_file OUT_DIR`): rank 1's loss
is poisoned (its real forward times NaN) on chosen micro-batches of chosen steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.e2e import BIN, REPO_ROOT, free_port  # noqa: E402

# (step, micro-batch) where rank 1's loss is NaN: the first of two micro-batches (its backward would
# be local, under no_sync), then the last one (its backward is the one that all-reduces).
POISON = {(0, 0), (1, 1)}
STEPS = 3  # the third step is clean: it must still run, in step, on both processes


def _checksum(model) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def _worker(out_dir: Path) -> None:
    import torch
    from accelerate import Accelerator

    from components.config import load_config
    from components.model.factory import initial_policy
    from components.rl.batch import TrainingBatch
    from components.rl.trainer import RLTrainer
    from tests.support.rl import TINY, sums

    acc = Accelerator(cpu=True)
    rank = acc.process_index
    # 8 rows per process in micro-batches of 4: two micro-batches per optimizer step
    cfg = load_config(overrides=TINY + ["rl.mini_batch_size=16", "rl.micro_batch_size=4"])
    model, tok = initial_policy(cfg.model, seed=0)
    trainer = RLTrainer(model, tok, sums(64, 2), cfg.rl, 0, acc, rollout=cfg.rollout, reward=cfg.reward,
                        model_cfg=cfg.model)
    update = trainer.update
    prompts = [p for p in sums(64, 2)["prompt"].tolist()[rank * 2:rank * 2 + 2] for _ in range(4)]
    ro = trainer.engine.generate(prompts, cfg.rl.max_completion_length, generator=torch.Generator().manual_seed(rank))
    batch = TrainingBatch(prompt_ids=ro.prompt_ids, prompt_mask=ro.prompt_mask, completion_ids=ro.completion_ids,
                          completion_mask=ro.completion_mask, loss_mask=ro.completion_mask.float(),
                          old_logprobs=ro.logprobs, advantages=torch.tensor([1.0, -1.0] * 4))

    where = {"step": 0, "micro": 0}
    real_loss = update.loss

    def loss(*args, **kwargs):
        value, stats = real_loss(*args, **kwargs)
        poisoned = rank == 1 and (where["step"], where["micro"]) in POISON
        where["micro"] += 1
        return (value * float("nan") if poisoned else value), stats

    update.loss = loss
    results, checksums, micro_counts = [], [_checksum(model)], []
    for step in range(STEPS):
        where.update(step=step, micro=0)
        rows = trainer.micro.for_one_step(batch.prompt_mask, batch.completion_mask)
        micro_counts.append(len(rows.micro_batches))
        result = update.step(batch, rows, 1e-2, update.base_loss)
        results.append(None if result is None else result.loss)
        checksums.append(_checksum(model))
    (out_dir / f"rank{rank}.json").write_text(json.dumps({
        "results": results, "checksums": checksums, "skipped_total": update.skipped_total,
        "skipped_in_row": update.skipped_in_row, "micro_counts": micro_counts}))
    trainer.close()


@pytest.mark.slow
def test_nan_loss_on_one_rank_makes_every_rank_skip_the_step_without_a_hang(tmp_path):
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(REPO_ROOT / "configs/accelerate/ddp.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
           __file__, str(tmp_path)]
    # The deadline is the hang check: the skip costs nothing, two tiny steps take seconds; a process
    # waiting in an all-reduce the other never joins waits until gloo's 30-minute timeout.
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the DDP processes hung: {str(exc.stderr)[-3000:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["micro_counts"] == r1["micro_counts"] == [2] * STEPS  # the poison hits a first and a last micro-batch
    for r in (r0, r1):
        assert r["results"][:2] == [None, None]  # both processes skipped both poisoned steps
        assert r["results"][2] is not None  # and then stepped together again
        assert r["skipped_total"] == 2 and r["skipped_in_row"] == 0
    assert r0["checksums"] == r1["checksums"]  # identical weights after every step
    assert r0["checksums"][0] == r0["checksums"][1] == r0["checksums"][2] != r0["checksums"][3]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
