"""GSPO: Zheng et al. 2025, "Group Sequence Policy Optimization" (arXiv 2507.18071).

GRPO's advantage with a sequence-level ratio s = exp(mean over tokens of log pi / pi_old), clipped per
sequence in the paper's narrow range 3e-4 / 4e-4, and the mean over sequences. The PIPO authors' PI
step for GSPO keeps this sign-aware sequence form (their GRPO-style -min(rho, clip(rho)) c is not used).
"""

from components.config.algorithms.registry import Algorithm, Published, register

GSPO = register(Algorithm(
    name="gspo",
    paper="Zheng et al. 2025, GSPO (arXiv 2507.18071)",
    published=Published(epsilon=3.0e-4, epsilon_high=4.0e-4, scale_rewards=True),
    aggregation="seq-mean",
    policy_loss="sequence_ratio",
    pipo_authors_surrogate="standard",
))
