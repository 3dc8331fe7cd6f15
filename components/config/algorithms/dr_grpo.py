"""Dr.GRPO: Liu et al. 2025, "Understanding R1-Zero-like training: a critical perspective" (arXiv 2503.20783).

GRPO without its two length and difficulty biases: no division by the group std (it over-weights
near-uniform groups; an explicit rl.scale_rewards true puts it back), and the token sum divided by a
constant (sequences x max_completion_length) instead of each sequence's own length.
"""

from components.config.algorithms.registry import Algorithm, Published, register

DR_GRPO = register(Algorithm(
    name="dr_grpo",
    paper="Liu et al. 2025, Understanding R1-Zero-like training (arXiv 2503.20783)",
    published=Published(epsilon=0.2, epsilon_high=0.2, scale_rewards=False),
    aggregation="seq-mean-token-sum-norm",
))
