"""What every process must agree on. The global batch is sharded by prompt group, so group statistics
need no communication; these are the few numbers that do (one process: no communication at all)."""

from __future__ import annotations

import math
from typing import Callable

import torch

Sums = Callable[[list[float]], list[float]]  # per-process values -> their sums over every process


def global_mean(accelerator, values: torch.Tensor) -> float:
    """Mean over every process's items: all-reduce (sum, count), so every process gets the same number
    (PIPO's mu_t must agree across processes, or they would take different PI steps)."""
    pair = torch.tensor([float(values.sum()), float(values.numel())], dtype=torch.float64)
    if accelerator.num_processes > 1:
        pair = accelerator.reduce(pair.to(accelerator.device), reduction="sum").cpu()
    return float(pair[0] / pair[1]) if pair[1] > 0 else math.nan


def rank_mean(accelerator, value: float) -> float:
    """A per-process scalar (a loss, an entropy) averaged over processes, so every process logs the same."""
    return value if accelerator.num_processes == 1 else global_mean(accelerator, torch.tensor([value]))


def global_max(accelerator, value: int) -> int:
    """The largest of a per-process integer (a micro-batch count, a 0/1 non-finite-loss flag), the same
    on every process: what all must agree on before a collective that only some would otherwise join."""
    if accelerator.num_processes == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], device=accelerator.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def global_sums(accelerator, values: list[float]) -> list[float]:
    """Each value summed over every process (a loss denominator: tokens or sequences of a whole step)."""
    if accelerator.num_processes == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return [float(x) for x in accelerator.reduce(t, reduction="sum").cpu()]


def paired_change(before: torch.Tensor, after: torch.Tensor, total: Sums = lambda xs: xs) -> tuple[float, float]:
    """Mean and standard error of after - before over the same items ([n] each; with `total`, over every
    process's share): the probe's true change and PIPO's paired signal. SE is nan below two items."""
    d = (after - before).double()
    n, s, ss = total([float(d.numel()), float(d.sum()), float((d**2).sum())])
    mean = s / max(n, 1.0)
    se = math.sqrt(max(ss - n * mean**2, 0.0) / (n - 1) / n) if n > 1 else math.nan
    return mean, se


def sharded(accelerator) -> bool:
    """FSDP or DeepSpeed: no process holds the whole model (outside the model's forward)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
