"""RL stage: base algorithms in registries, PIPO as a plug-in, and the training loop.

    trainer.py      RLTrainer: the loop (rollout, rewards, advantages, PI step, base update, cache)
    advantages.py   advantage estimators by name (grpo, dr_grpo, dapo, gspo)
    losses.py       policy losses by name with their normalisers, the k3 KL term
    pipo.py         PIPO: improvement signal, attributions, the window and cached batch
    rewards.py      verifiable scoring and the shaping steps the config picks (DAPO)
    batch.py        TrainingBatch (what an update trains on), MicroBatches (steps, token-budget micro-batches)
    update.py       one optimizer step: the per-micro-batch loss, accumulation, clipping, zero-gradient rows skipped
    metrics.py      every number an iteration logs
    logprobs.py     completion log-probs: completion positions only, the LM head in chunks
    importance.py   sampler/trainer mismatch and truncated importance weights
    collectives.py  the few numbers every process must agree on
    sampler.py      the prompt order
    checkpoint.py   atomic checkpoints, the trainer state, resume, the run fingerprint
"""
