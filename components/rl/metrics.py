"""Every number an RL iteration logs (docs/metrics.md), assembled in one place and the same on every
process: batch statistics are all-reduced, per-process scalars averaged over processes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch

from components.rl.batch import TrainingBatch
from components.rl.collectives import global_mean, global_sums, rank_mean
from components.rl.importance import logprob_mismatch
from components.rollout import RolloutBatch


@dataclass
class IterationTimes:
    """Wall seconds of an iteration's parts (perf/*)."""

    total: float
    rollout: float  # generation only (scoring excluded)
    weight_sync: float
    update: float  # the base update's optimizer steps
    pi: float = 0.0  # the PI step
    probe: float = 0.0  # the improvement probe (rl.pipo.probe), when it ran this iteration


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def iteration_metrics(acc, *, batch: RolloutBatch, all_rewards: torch.Tensor, group_size: int, mu_t: float,
                      training: TrainingBatch, rows_scored: torch.Tensor | None, update, pi, times: IterationTimes,
                      tokens: int, recompute_logprobs: bool, is_cap: float, skipped_updates: int, scorer) -> dict:
    """batch: the kept groups as sampled; training: them as the update saw them. rows_scored: the rows
    whose pi_old the trainer recomputed (None: all). update: UpdateStats; pi: the PIReport or None."""
    avg = partial(rank_mean, acc)  # a per-rank number, averaged over ranks
    # every process computes the same metrics in the same order: the means are collectives
    metrics = _sampler_gap(avg, batch, training, rows_scored, recompute_logprobs, is_cap)
    if pi is not None:
        metrics.update(_pipo_metrics(acc, avg, pi, mu_t, times))
    group_std = all_rewards.view(-1, group_size).std(dim=1)  # over every sampled group, before DAPO's filter
    second_moment = global_mean(acc, all_rewards.double() ** 2)
    completion = batch.completion_mask.bool()
    metrics.update({
        "reward/mean": mu_t,
        "reward/std": math.sqrt(max(second_moment - mu_t**2, 0.0)),
        "frac_reward_zero_std": global_mean(acc, (group_std == 0).float()),
        "loss/policy": avg(_mean(update.losses)),
        "actor/clip_frac": avg(_mean(update.clip_fracs)),
        "actor/grad_norm": _mean(update.grad_norms),
        # -log pi_sampler of every sampled token: a Monte-Carlo estimate of the sampler's entropy over
        # all rows, free (actor/entropy covers only the rows the update ran)
        "rollout/entropy_estimate": global_mean(acc, -batch.logprobs[completion]),
        "completions/mean_length": global_mean(acc, batch.completion_mask.sum(-1).float()),
        "completions/clipped_ratio": global_mean(acc, batch.truncated.float()),
        "train/skipped_updates": float(skipped_updates),
        "reward/scoring_timeouts": float(scorer.timeouts),
        "reward/scoring_crashes": float(scorer.crashes),
        "reward/scoring_errors": float(scorer.errors),
        "perf/iter_seconds": times.total,
        "perf/rollout_seconds": times.rollout,
        "perf/update_seconds": times.update,
        "perf/rollout_tokens_per_s": tokens / max(times.rollout, 1e-9),
        "perf/weight_sync_seconds": times.weight_sync,
        "perf/probe_seconds": times.probe,
        "perf/skipped_zero_adv_frac": _skipped(acc, update.rows, update.rows_run),
    })
    if update.kls:
        metrics["actor/kl"] = avg(_mean(update.kls))
    if update.entropies:  # rl.log_entropy
        metrics["actor/entropy"] = avg(_mean(update.entropies))
    return metrics


def _sampler_gap(avg, batch: RolloutBatch, training: TrainingBatch, rows_scored: torch.Tensor | None,
                 recompute_logprobs: bool, is_cap: float) -> dict[str, float]:
    """How far the sampler's log-probs were from the trainer's, and the truncated IS weights' effect."""
    metrics: dict[str, float] = {}
    if recompute_logprobs:
        mask = batch.completion_mask if rows_scored is None else batch.completion_mask * rows_scored[:, None]
        mismatch = logprob_mismatch(training.old_logprobs, batch.logprobs, mask)
        metrics["rollout/logprob_diff"] = avg(mismatch["rollout/logprob_diff"])
        metrics["rollout/logprob_diff_max"] = avg(mismatch["rollout/logprob_diff_max"])
    if training.is_weights is not None:
        w, m = training.is_weights, batch.completion_mask.bool()
        if rows_scored is not None:
            m = m & rows_scored[:, None]
        metrics["rollout/is_weight_mean"] = avg(float(w[m].mean()) if m.any() else 1.0)
        metrics["rollout/is_capped_frac"] = avg(float((w[m] >= is_cap).float().mean()) if m.any() else 0.0)
    return metrics


def _pipo_metrics(acc, avg, pi, mu_t: float, times: IterationTimes) -> dict[str, float]:
    """The PIPO signal of this iteration (pi: the PIReport) and what its PI step cost."""
    metrics = {"pipo/mu_t": mu_t, "pipo/active": float(pi.signal is not None)}
    if pi.signal is not None:
        s = pi.signal
        metrics.update({"pipo/mu_his": s.mu_his, "pipo/sigma_his": s.sigma_his, "pipo/xi": s.xi,
                        "pipo/xi_used": s.xi_used, "pipo/phi": s.phi, "pipo/loss_scale": s.loss_scale,
                        "pipo/pi_loss": avg(pi.pi_loss),
                        "perf/pi_seconds": times.pi, "perf/paired_seconds": pi.paired_seconds,
                        "perf/pi_skipped_frac": _skipped(acc, pi.rows, pi.rows_run)})
    return metrics


def _skipped(acc, rows: int, rows_run: int) -> float:
    """Share of row-steps whose forward/backward was skipped (zero gradient), over every process."""
    total, run = global_sums(acc, [float(rows), float(rows_run)])
    return 1.0 - run / total if total else 0.0


def run_summary(cfg, start: int) -> str:
    """The line RL starts with: algorithm, iterations, batch, and every PIPO setting that shapes the run."""
    p = cfg.pipo
    pipo = (f"PIPO on (window {p.window}, neg_scale {p.neg_scale}, min_history {p.effective_min_history}, "
            f"signal {p.signal}, pi_steps {p.pi_steps}, pi_clip_mode {p.pi_clip_mode}, pi_lr_scale {p.pi_lr_scale})"
            if p.enabled else "PIPO off")
    resumed = f", resuming at {start}" if start else ""
    return (f"rl: {cfg.algorithm}, {cfg.iterations} iterations{resumed}, {cfg.prompts_per_iteration} prompts x "
            f"{cfg.num_generations} samples; {pipo}")


def progress_fields(metrics: dict[str, float]) -> dict[str, float | str]:
    """The numbers an RL progress line shows (components/infra/progress.py), from an iteration's metrics.
    actor/entropy exists only when the update ran a row: with every advantage 0 (an untrained policy that
    scores 0 everywhere) nothing runs, and the line shows the sampler's estimate, marked, instead of a nan."""
    fields: dict[str, float | str] = {"reward": f"{metrics['reward/mean']:.3f}"}
    if "pipo/probe_accuracy" in metrics:
        fields["probe_acc"] = f"{metrics['pipo/probe_accuracy']:.3f}"
    fields["len"] = f"{metrics['completions/mean_length']:.1f}"
    fields["entropy"] = (f"{metrics['actor/entropy']:.3f}" if "actor/entropy" in metrics
                         else f"{metrics['rollout/entropy_estimate']:.3f} (sampled; no update row ran)")
    if "pipo/active" in metrics:
        fields["pipo"] = (f"active xi {metrics['pipo/xi']:+.3f}" if metrics["pipo/active"]
                          else "inactive (window filling)")
    return fields
