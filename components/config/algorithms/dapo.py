"""DAPO: Yu et al. 2025, "DAPO: an open-source LLM reinforcement learning system at scale" (arXiv 2503.14476).

GRPO's advantage with: clip-higher (epsilon 0.2, epsilon_high 0.28, sec. 3.1), dynamic sampling
(groups whose rewards are all equal are dropped and refilled, sec. 3.2), the token mean over the whole
batch (sec. 3.3) and the soft overlong punishment (a linear ramp to -1 over the last tokens before the
limit, sec. 3.4). The paper's buffer is 4096 of 20480 tokens; the project's length is tiny, so
rl.dapo.overlong_buffer (and the refill rounds, rl.dapo.max_resample_rounds) are always the user's.
"""

from components.config.algorithms.registry import Algorithm, Published, register

DAPO = register(Algorithm(
    name="dapo",
    paper="Yu et al. 2025, DAPO (arXiv 2503.14476)",
    published=Published(epsilon=0.2, epsilon_high=0.28, scale_rewards=True, dynamic_sampling=True,
                        overlong_penalty=1.0),
    aggregation="token-mean",
    group_filter=True,
    overlong_shaping=True,
))
