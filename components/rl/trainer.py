"""The RL loop, readable top to bottom. One iteration t (docs/pipo.md, "One iteration"):

  1. rollout:     B_t, P prompts x G samples from pi_{theta_t}, scored by the verifiers
                  (the group filter, DAPO's dynamic sampling, may drop groups and refill them)
     rewards:     the kept groups' rewards, shaped (DAPO's soft overlong penalty)
     advantages:  base advantages A, old and reference log-probs, IS weights: the TrainingBatch of B_t
  2. mu_t = mean reward of everything sampled (the verifiers' reward, with reward.format_weight's term
                  already in; before the group filter and DAPO's shaping); PIPO's signal xi_t from the window
  3. PI step:     PIPO's update on the cached B_{t-1}, if enabled and active (components/rl/pipo_plugin.py)
  4. base_update: the base algorithm's loss on B_t (ppo_epochs x mini-batches)
  5. cache:       B_t (with its attributions) becomes PIPO's cached batch; mu_t joins the window
  then metrics:   every logged number (components/rl/metrics.py)
Before an iteration, rl.guard (components/rl/guard.py) may check the probe and save the best checkpoint or
roll back to it (docs/guard.md); at the run's end the model is the best verified checkpoint.

Rows with a zero advantage (or PI coefficient) and no KL term have an exactly zero gradient: their
forward/backward is skipped and every loss denominator still counts them (components/rl/update.py).

Distributed layout (accelerate): the global batch of P prompts is sharded by prompt group, so all
G samples of a prompt live on one rank and group statistics need no communication; gradients are
averaged by DDP; mu_t and batch metrics are all-reduced, so every rank computes the same xi_t.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from components.config import ModelConfig, RewardConfig, RLConfig, RolloutConfig
from components.infra.faults import maybe_fault
from components.infra.progress import ProgressReporter
from components.reward.pool import pool_for
from components.rl import checkpoint as ckpt
from components.rl import streams
from components.rl.advantages import ADVANTAGES
from components.rl.batch import MicroBatches, TrainingBatch
from components.rl.collectives import global_max, global_mean, global_sums, sharded
from components.rl.curves import curve_point
from components.rl.guard import NEEDS, Guard
from components.rl.importance import truncated_is_weights
from components.rl.logprobs import rollout_logprobs
from components.rl.metrics import IterationTimes, iteration_metrics, progress_fields, run_summary
from components.rl.pipo_plugin import PIPO, PIReport
from components.rl.probe import ProbeSet, ProbeTracker, score_probe, split_probe
from components.rl.rewards import Rollout, VerifierNoise, score_batch, shaping_steps
from components.rl.sampler import PromptSampler
from components.rl.update import JointLoss, NonFiniteLossError, PolicyUpdate, UpdateStats
from components.rollout import RolloutBatch, make_engine

log = logging.getLogger(__name__)

__all__ = ["RLTrainer", "RLResult", "NonFiniteLossError", "score_batch", "train_rl"]


@dataclass
class RLResult:
    iterations: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)  # every iteration's, resumed ones included
    summary: dict[str, float] = field(default_factory=dict)  # end-of-run metrics (the probe's signal agreement)
    resumed_from: int = 0
    resumed_run_id: str | None = None
    guard: dict = field(default_factory=dict)  # rl.guard: the output's best_iteration and reason


class RLTrainer:
    def iteration(self, it: int) -> dict[str, float]:
        """Iteration t, step by step (module docstring); returns its metrics."""
        t0 = time.time()
        probed = self.run_probe(it)  # the probe set's scores under pi_theta_t, every rl.pipo.probe.every
        ro = self.rollout(it)  # 1. B_t ~ pi_theta_t, scored
        maybe_fault("rollout", it)  # tests: a crash in the middle of an iteration
        rewards = self.rewards(ro)  # 1. shaped rewards of the kept groups
        batch = self.advantages(ro, rewards)  # 1. A, pi_old, pi_ref, IS weights: B_t as a TrainingBatch
        mu_t = global_mean(self.acc, ro.all_rewards)  # 2. everything sampled, before the filter and DAPO's shaping
        pi = self.pipo.before_update(mu_t, it, self.stream(streams.PI_SHUFFLE, it)) \
            if self.pipo else None  # 3. xi_t, and the PI step on B_{t-1}
        self.weights_dirty |= bool(pi and pi.optimizer_steps)
        t_update = time.time()
        update = self.base_update(batch, self.stream(streams.UPDATE_SHUFFLE, it), pi and pi.joint)  # 4. on B_t
        update_seconds = time.time() - t_update
        if self.pipo:  # 5. B_t is the next B_{t-1}
            self.pipo.after_update(mu_t, batch, ro.prompts, ro.rewards.double().mean(dim=1))
        times = IterationTimes(total=time.time() - t0, rollout=ro.seconds, weight_sync=ro.sync_seconds,
                               update=update_seconds, pi=pi.seconds if pi is not None else 0.0,
                               probe=probed[1] if probed else 0.0)
        metrics = self.metrics(ro, batch, mu_t, pi, update, times)
        if self.probe is not None:
            if pi is not None and pi.signal is not None:
                self.probe.observe_xi(pi.signal.xi)
            if probed is not None:
                metrics.update(self.probe.record(probed[0], lambda xs: global_sums(self.acc, xs)))
        return metrics

    def __init__(self, model, tokenizer, prompts: pd.DataFrame, cfg: RLConfig, seed: int, accelerator, *,
                 rollout: RolloutConfig, reward: RewardConfig, model_cfg: ModelConfig,
                 log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
                 checkpoint_dir: Path | None = None, fingerprint: str | None = None,
                 model_path: str | Path | None = None):
        """model_path: the folder the policy was loaded from (the vllm engine starts there). model_cfg:
        the LM-head chunk; gradient checkpointing and mixed precision are already on model and accelerator.
        fingerprint: the run's, as the rl stage computed it to name checkpoint_dir (None: from cfg alone)."""
        self.cfg, self.seed, self.acc = cfg, seed, accelerator
        self.rollout_cfg, self.reward_cfg = rollout, reward
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        if cfg.prompts_per_iteration % self.world:
            raise ValueError(f"rl.prompts_per_iteration ({cfg.prompts_per_iteration}) must divide by the "
                             f"number of processes ({self.world})")
        self.advantage_fn = ADVANTAGES[cfg.record.advantage]
        self.settings = cfg.effective  # the algorithm's published settings, explicit rl.* values in their place
        self.group_filter, self.reward_shaping = shaping_steps(cfg)
        self.tokenizer = tokenizer
        self.log_metrics, self.checkpoint_dir = log_metrics, checkpoint_dir
        # A frozen reference for the KL term is built only when it is used (beta > 0).
        self.ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.beta > 0 else None
        trainable = [p for p in model.parameters() if p.requires_grad]
        # fused: one kernel for every tensor (CPU and CUDA): 1.0 -> 0.25 ms a step on the tiny default
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=all(p.device.type in ("cpu", "cuda") for p in trainable))
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        # With autocast the trainer's pi differs from the fp32 sampler's: pi_old must be the trainer's.
        self.recompute_logprobs = rollout.effective_recompute_logprobs or accelerator.mixed_precision != "no"
        self.sharded = sharded(accelerator)
        self.update = PolicyUpdate(self.model, self.optimizer, accelerator, cfg,
                                   chunk_tokens=model_cfg.lm_head_chunk_tokens, sharded=self.sharded)
        self.micro = MicroBatches(max(1, cfg.mini_batch_size // self.world), cfg.max_tokens_per_micro_batch,
                                  cfg.micro_batch_size, lambda n: global_max(accelerator, n))
        self.engine = make_engine(rollout, accelerator.unwrap_model(self.model), tokenizer, model_path, None,
                                  streams.seed_int(streams.ENGINE, seed, 0, self.rank, bits=31), self.world,
                                  trust_remote_code=model_cfg.trust_remote_code)
        # The engine's weights are brought up to date before a rollout whenever an optimizer step
        # changed them (a resumed checkpoint counts); the hf engine shares the module, a no-op.
        self.weights_dirty = True
        self.scorer = pool_for(reward)  # per-item timeouts for every item not bounded by construction
        # what a checkpoint must match to resume, from the prompts as given (before the probe split)
        fingerprint = fingerprint or ckpt.run_fingerprint(cfg, seed, len(prompts), self.world)
        self.probe_set, self.probe, self.probed = None, None, {}
        if cfg.pipo.probe.every > 0 or cfg.guard.enabled:  # held out: the same prompts for every variant of a seed
            train_idx, probe_idx = split_probe(len(prompts), cfg.pipo.probe.size, seed)
            held = prompts.iloc[probe_idx]
            log.info("rl: %d of %d RL prompts held out for the probe", len(probe_idx), len(prompts))
            self.probe_set = ProbeSet(*(held[c].tolist()[self.rank::self.world] for c in ("prompt", "answer", "source")))
            self.probe = ProbeTracker() if cfg.pipo.probe.every > 0 else None
            prompts = prompts.iloc[train_idx]
        self.lr = cfg.lr  # rl.lr, decayed by the guard at each rollback
        self.guard = Guard(cfg.guard, cfg.lr, lambda xs: global_sums(accelerator, xs), score=self.score_held_out,
                           save=lambda it: self.save(it, checkpoint_dir / ckpt.BEST), restore=self.restore,
                           stop=self.save, log_metrics=log_metrics) if cfg.guard.enabled else None
        if self.guard is not None and (checkpoint_dir is None or self.sharded):
            raise ValueError(NEEDS)
        self.sampler = PromptSampler(len(prompts), seed)
        self.texts, self.answers, self.sources = (prompts[c].tolist() for c in ("prompt", "answer", "source"))
        self.pipo = PIPO(cfg.pipo, update=self.update, micro=self.micro, lr=cfg.lr, ppo_epochs=cfg.ppo_epochs,
                         group_size=cfg.num_generations, authors_surrogate=cfg.record.pipo_authors_surrogate,
                         total=lambda xs: global_sums(accelerator, xs), resample=self.resample, seed=seed) \
            if cfg.pipo.enabled else None
        self.start_iteration = 0
        self.curve: list[dict[str, float]] = []
        self.resumed_run_id: str | None = None
        self.meta = {"fingerprint": fingerprint, "seed": seed, "num_prompts": len(prompts), "num_processes": self.world,
                     "algorithm": cfg.algorithm, "pipo": cfg.pipo.enabled}

    # ---- the steps of an iteration, in order (PIPO's: components/rl/pipo_plugin.py) ----------

    def rollout(self, it: int) -> Rollout:
        """P/world prompt groups of G samples, scored; groups the filter drops are refilled from new
        prompts for up to group_filter.extra_rounds more rounds."""
        cfg = self.cfg
        want = cfg.prompts_per_iteration // self.world
        sync_seconds = self._sync_engine()
        noise = self.verifier_noise(it, streams.VERIFIER_NOISE)
        generator = self.stream(streams.ROLLOUT, it)
        kept_parts, kept_rewards, kept_prompts, all_rewards = [], [], [], []
        tokens, seconds, have = 0, 0.0, 0
        for _ in range(1 + self.group_filter.extra_rounds):
            chosen = torch.tensor(self.sampler.next(cfg.prompts_per_iteration)[self.rank::self.world])
            batch, rewards, gen_seconds = self.sample_groups(chosen, generator, noise)
            seconds += gen_seconds
            tokens += batch.num_completion_tokens
            all_rewards.append(rewards.reshape(-1))
            take = self.group_filter.keep(rewards).nonzero().flatten()[: want - have]
            if len(take):
                kept_parts.append(batch.select((take[:, None] * cfg.num_generations
                                                + torch.arange(cfg.num_generations)).reshape(-1)))
                kept_rewards.append(rewards[take])
                kept_prompts.append(chosen[take])
                have += len(take)
            if have >= want:
                break
        if not kept_parts:  # every group uninformative: keep the last round, its advantages are all 0
            kept_parts, kept_rewards, kept_prompts = [batch], [rewards], [chosen]
        return Rollout(batch=RolloutBatch.concat(kept_parts, self.tokenizer.pad_token_id),
                       rewards=torch.cat(kept_rewards), all_rewards=torch.cat(all_rewards),
                       prompts=torch.cat(kept_prompts), tokens=tokens, seconds=seconds, sync_seconds=sync_seconds)

    def sample_groups(self, prompts: torch.Tensor, generator: torch.Generator,
                      noise: VerifierNoise | None) -> tuple[RolloutBatch, torch.Tensor, float]:
        """G samples of each prompt index, scored: (batch, rewards [P, G], generation seconds)."""
        cfg, G = self.cfg, self.cfg.num_generations
        rep = [int(i) for i in prompts for _ in range(G)]
        t0 = time.time()
        batch = self.engine.generate([self.texts[i] for i in rep], cfg.max_completion_length, cfg.temperature,
                                     cfg.top_p, generator=generator)
        seconds = time.time() - t0
        rewards = score_batch(batch, [self.sources[i] for i in rep], [self.answers[i] for i in rep], self.scorer,
                              self.reward_cfg, noise).view(-1, G)
        return batch, rewards, seconds

    def resample(self, prompts: torch.Tensor, it: int) -> torch.Tensor:
        """PIPO's paired signal: [n, G] rewards of these prompts sampled again with the current policy."""
        self._sync_engine()
        noise = self.verifier_noise(it, streams.PAIRED_NOISE)
        return self.sample_groups(prompts, self.stream(streams.PAIRED_RESAMPLE, it), noise)[1]

    def stream(self, purpose: str, it: int) -> torch.Generator:
        """This process's random stream for `purpose` at iteration `it` (components/rl/streams.py)."""
        return streams.torch_stream(purpose, self.seed, it, self.rank)

    def verifier_noise(self, it: int, purpose: str) -> VerifierNoise | None:
        """rl.verifier_noise: this iteration's flips, from a stream of their own and of rl.verifier_noise.seed."""
        noise = self.cfg.verifier_noise
        if noise.flip_share == 0.0:
            return None
        return VerifierNoise(noise.flip_share, streams.torch_stream(purpose, noise.seed, it, self.rank))

    def run_probe(self, it: int) -> tuple[torch.Tensor, float] | None:
        """The probe set's scores under the current policy and the seconds they took, every
        rl.pipo.probe.every iterations (None between probes)."""
        if self.probe is None or it % self.cfg.pipo.probe.every:
            return None
        t0 = time.time()
        return self.score_held_out(it), time.time() - t0

    def score_held_out(self, it: int) -> torch.Tensor:
        """The probe set's per-prompt scores under the current policy, scored once per iteration (the guard
        and PIPO's probe share them; a restore clears them)."""
        if it not in self.probed:
            self._sync_engine()
            self.probed = {it: score_probe(self.engine, self.scorer, self.probe_set, self.cfg,
                                           self.stream(streams.PROBE, it))}
        return self.probed[it]

    def rewards(self, ro: Rollout) -> torch.Tensor:
        """[P_kept, G] rewards of the kept groups after the configured shaping steps."""
        rewards = ro.rewards
        for shape in self.reward_shaping:
            rewards = shape(rewards, ro.batch)
        return rewards

    def advantages(self, ro: Rollout, rewards: torch.Tensor) -> TrainingBatch:
        """B_t as the update sees it: base advantages, loss mask, pi_old, pi_ref, IS weights."""
        cfg, b = self.cfg, ro.batch
        advantages = self.advantage_fn(rewards, scale_rewards=self.settings.scale_rewards).reshape(-1)
        loss_mask = b.completion_mask.float()
        if cfg.mask_truncated_completions:
            loss_mask = loss_mask * (~b.truncated).float()[:, None]
        ref_logprobs = None
        runs = self.update.rows_to_run(advantages)  # pi_old and pi_ref only where a gradient will use them
        micro = self.micro.for_scoring(b.prompt_mask, b.completion_mask, runs)
        chunk = self.update.chunk_tokens
        if self.ref_model is not None:
            with self.acc.autocast():
                ref_logprobs = rollout_logprobs(self.ref_model, b, micro, cfg.temperature, chunk_tokens=chunk)
        old_logprobs, is_weights = b.logprobs, None  # hf: the sampler is the trainer's module, same fp32 weights
        if self.recompute_logprobs:
            # The PPO ratio needs pi_old as the trainer computes it; the sampler's log-probs only
            # tell how far the behaviour policy was from it (truncated IS corrects for that).
            with self.acc.autocast():
                old_logprobs = rollout_logprobs(self.model, b, micro, cfg.temperature, lm_head=self.update.lm_head,
                                                chunk_tokens=chunk)
            if runs is not None:  # rows never run: the sampler's values, so no metric reads a 0 as a log-prob
                old_logprobs = torch.where(runs[:, None], old_logprobs, b.logprobs)
            tis = self.rollout_cfg.importance_sampling
            if tis.enabled:
                is_weights = truncated_is_weights(old_logprobs, b.logprobs, b.completion_mask, tis.cap, tis.level)
        return TrainingBatch(prompt_ids=b.prompt_ids, prompt_mask=b.prompt_mask, completion_ids=b.completion_ids,
                             completion_mask=b.completion_mask, loss_mask=loss_mask, old_logprobs=old_logprobs,
                             advantages=advantages, ref_logprobs=ref_logprobs, is_weights=is_weights)

    def base_update(self, batch: TrainingBatch, generator: torch.Generator, joint: JointLoss | None) -> UpdateStats:
        """ppo_epochs shuffled passes over B_t, one optimizer step per mini-batch; the first adds `joint`."""
        stats = UpdateStats()
        for plan in self.micro.for_base_update(batch.prompt_mask, batch.completion_mask, self.cfg.ppo_epochs,
                                               generator, self.update.rows_to_run(batch.advantages)):
            step, joint = self.update.step(batch, plan, self.lr, self.update.base_loss, joint), None
            if step is not None:
                stats.add(step, plan)
                self.weights_dirty = True
        return stats

    def metrics(self, ro: Rollout, batch: TrainingBatch, mu_t: float, pi: PIReport | None, update: UpdateStats,
                times: IterationTimes) -> dict[str, float]:
        return iteration_metrics(
            self.acc, batch=ro.batch, all_rewards=ro.all_rewards, group_size=self.cfg.num_generations, mu_t=mu_t,
            training=batch, rows_scored=self.update.rows_to_run(batch.advantages), update=update, pi=pi,
            times=times, tokens=ro.tokens, recompute_logprobs=self.recompute_logprobs,
            is_cap=self.rollout_cfg.importance_sampling.cap, skipped_updates=self.update.skipped_total,
            scorer=self.scorer)

    # ---- the run ---------------------------------------------------------------------------

    def train(self) -> RLResult:
        cfg = self.cfg
        result = RLResult(iterations=0, seconds=0.0)
        start = time.time()
        main = self.acc.is_main_process
        if main:
            log.info("%s", run_summary(cfg, self.start_iteration))
        progress = ProgressReporter("rl iter", cfg.iterations, start=self.start_iteration, every=cfg.log_every,
                                    logger=log, enabled=main)
        for it in range(self.start_iteration, cfg.iterations):
            guarded = self.guard.at(it) if self.guard is not None else {}
            if guarded is None:  # stopped early: the model is the best verified checkpoint
                break
            metrics = {**self.iteration(it), **guarded}
            self.log_metrics(metrics, it)
            result.history.append(metrics)
            self.curve.append(curve_point(it, metrics))
            progress.update(it + 1, progress_fields(metrics))
            if self.checkpoint_dir is not None and ((it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations):
                self.save(it + 1)
        result.iterations, result.curve = cfg.iterations, self.curve
        if self.guard is not None:
            result.iterations = cfg.iterations if self.guard.stopped_at is None else self.guard.stopped_at
            result.guard = self.guard.output(result.iterations)
        result.seconds = time.time() - start
        if self.probe is not None:  # over every probe interval of the run, resumed ones included
            result.summary = self.probe.agreement()
            self.log_metrics(result.summary, cfg.iterations)
        return result

    def restore(self, iteration: int, weights_only: bool = False) -> None:
        """The guard's best checkpoint (checkpoint_dir/best): its weights and, for a rollback, its optimizer,
        PIPO and probe state; the sampler goes on forward (new prompts for the retry), so does the iteration."""
        path = self.checkpoint_dir / ckpt.BEST / ckpt.checkpoint_name(iteration)
        state = ckpt.load_checkpoint(path, self.acc.unwrap_model(self.model), self.meta, self.rank)
        if not weights_only:
            ckpt.load_trainer_state(state, self.optimizer, None, self.pipo, self.probe)
        self._set_lr()
        self.weights_dirty, self.probed = True, {}

    def _set_lr(self) -> None:
        """The guard's lr (rl.lr x lr_decay per rollback) for the base update and PIPO's step."""
        if self.guard is not None:
            self.lr = self.guard.lr
            if self.pipo is not None:
                self.pipo.lr = self.lr

    def close(self) -> None:
        """Stop the scoring workers (the rollout engine goes with the process)."""
        self.scorer.close()

    # ---- checkpoints (components/rl/checkpoint.py) -----------------------------------------

    def resume(self, checkpoint_dir: Path) -> int:
        """Continue from the newest loadable checkpoint in checkpoint_dir at or below rl.iterations
        (ckpt.resume_point); returns the next iteration, 0 when there is none."""
        if self.sharded and ckpt.resume_candidates(checkpoint_dir):
            raise RuntimeError(
                f"exact resume from {checkpoint_dir} is implemented for one process and DDP; under FSDP/DeepSpeed "
                "the optimizer state is sharded. Start a new run from the checkpoint's model/ folder "
                "(set sft.out_dir to it), or remove the folder to start over.")
        if self.acc.is_main_process:
            for leftover in ckpt.remove_partial_writes(checkpoint_dir) + ckpt.remove_partial_writes(
                    checkpoint_dir / ckpt.BEST):
                log.warning("rl: removed %s, a checkpoint write that never finished (the process died)", leftover)
        self.acc.wait_for_everyone()
        model = self.acc.unwrap_model(self.model)
        found = ckpt.resume_point(checkpoint_dir, self.cfg.iterations,
                                  lambda path: ckpt.load_checkpoint(path, model, self.meta, self.rank))
        if found is None:
            return 0
        path, state = found
        self.update.skipped_total = ckpt.load_trainer_state(state, self.optimizer, self.sampler, self.pipo,
                                                            self.probe, self.guard)
        self._set_lr()
        self.curve = ckpt.saved_curve(state)
        meta = json.loads((path / "meta.json").read_text())
        self.start_iteration, self.resumed_run_id = int(meta["iteration"]), meta.get("mlflow_run_id")
        self.weights_dirty = True
        log.info("rl: resumed from %s at iteration %d (first written by MLflow run %s)", path,
                 self.start_iteration, self.resumed_run_id)
        return self.start_iteration

    def save(self, iteration: int, root: Path | None = None) -> None:
        """A checkpoint in checkpoint_dir, or the guard's best one in root (checkpoint_dir/best)."""
        root = root or self.checkpoint_dir
        self.acc.wait_for_everyone()
        # Sharded modes gather the full weights first: a collective every rank must join.
        full = self.acc.get_state_dict(self.model) if self.sharded else None
        states: dict | list[Path] = ckpt.trainer_state(self.optimizer, self.sampler, self.pipo,
                                                       self.update.skipped_total, self.probe, self.curve, self.guard)
        if self.world > 1:  # each rank's own state (its PIPO cache holds its own shard of B_{t-1})
            ckpt.stage_rank_state(root, self.rank, states)
            self.acc.wait_for_everyone()
            states = [root / ".staging" / ckpt.rank_state_name(r) for r in range(self.world)]
        if self.acc.is_main_process:
            guard = {"guard_best": self.guard.best_iteration} if self.guard is not None else {}
            ckpt.save_checkpoint(root, iteration, self.acc.unwrap_model(self.model), self.tokenizer, states,
                                 {**self.meta, "mlflow_run_id": ckpt.active_run_id(), **guard},
                                 keep=self.cfg.keep_checkpoints if root == self.checkpoint_dir else None,
                                 state_dict=full)
            if self.guard is not None:
                ckpt.prune_best(self.checkpoint_dir, self.guard.best_iteration)
        self.acc.wait_for_everyone()

    # ---- helpers -------------------------------------------------------------------------

    def _sync_engine(self) -> float:
        """Push the trainer's weights into the rollout engine if a step changed them; seconds spent."""
        if not self.weights_dirty:
            return 0.0
        t0 = time.time()
        self.engine.sync_weights(self.acc.unwrap_model(self.model))
        self.weights_dirty = False
        return time.time() - t0


def train_rl(model, tokenizer, prompts: pd.DataFrame, cfg: RLConfig, seed: int, accelerator, *,
             rollout: RolloutConfig, reward: RewardConfig, model_cfg: ModelConfig,
             log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
             checkpoint_dir: Path | None = None, resume: bool = False, fingerprint: str | None = None,
             model_path: str | Path | None = None,
             on_resume: Callable[[int, str | None], None] = lambda it, run_id: None):
    """Run cfg.iterations RL iterations on `prompts` (columns prompt, answer, source).

    With resume=True and a checkpoint in checkpoint_dir, continue from it instead of starting over;
    on_resume(iteration, run id that wrote the checkpoint) is called before training continues.
    """
    trainer = RLTrainer(model, tokenizer, prompts, cfg, seed, accelerator, rollout=rollout, reward=reward,
                        model_cfg=model_cfg, log_metrics=log_metrics, checkpoint_dir=checkpoint_dir,
                        fingerprint=fingerprint, model_path=model_path)
    if resume and checkpoint_dir is not None and trainer.resume(checkpoint_dir):
        on_resume(trainer.start_iteration, trainer.resumed_run_id)
    try:
        result = trainer.train()
    finally:
        trainer.close()
    result.resumed_from = trainer.start_iteration
    result.resumed_run_id = trainer.resumed_run_id
    return accelerator.unwrap_model(trainer.model), result
