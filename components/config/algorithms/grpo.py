"""GRPO: Shao et al. 2024, "DeepSeekMath" (arXiv 2402.03300).

Advantage (r - mean_g) / (std_g + 1e-6), std with ddof 1; token-level ratio, PPO's clipped surrogate
with the symmetric range 0.2; each sequence's token mean, then the mean over sequences.
"""

from components.config.algorithms.registry import Algorithm, Published, register

GRPO = register(Algorithm(
    name="grpo",
    paper="Shao et al. 2024, DeepSeekMath (arXiv 2402.03300)",
    published=Published(epsilon=0.2, epsilon_high=0.2, scale_rewards=True),
    aggregation="seq-mean-token-mean",
    trl={"loss_type": "grpo", "importance_sampling_level": "token"},
))
