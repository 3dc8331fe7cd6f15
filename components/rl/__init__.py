"""RL stage: base algorithms as records over registered blocks, PIPO as a plug-in, and the training loop.

    trainer.py      RLTrainer: the loop (rollout, rewards, advantages, PI step, base update, cache)
    advantages.py   advantage estimators by name (an algorithm's record, components/config/algorithms, names one)
    losses.py       policy losses and aggregations by name (each with its normaliser), the k3 KL term
    pipo.py         PIPO's math: improvement signal, attributions, the window and cached batch (PIPOState)
    pipo_plugin.py  PIPO as the trainer calls it: the PI step before the base update, caching B_t after
    probe.py        the improvement probe: held-out prompts scored every few iterations, PIPO's signal checked
    rewards.py      verifiable scoring, verifier noise, and the group filter and reward shaping a record takes
    batch.py        TrainingBatch (what an update trains on), MicroBatches (steps, token-budget micro-batches)
    update.py       an optimizer step: the per-micro-batch loss, accumulation, clipping, zero-gradient rows skipped
    metrics.py      every number an iteration logs
    curves.py       the per-iteration curve points a checkpoint keeps
    logprobs.py     completion log-probs: completion positions only, the LM head in chunks
    importance.py   sampler/trainer mismatch and truncated importance weights
    collectives.py  the few numbers every process must agree on (and the paired mean / standard error)
    sampler.py      the prompt order
    checkpoint.py   atomic checkpoints, the trainer state, resume, the run fingerprint
"""
