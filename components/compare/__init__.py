"""`make compare`: RL variants (GRPO, PIPO, ...) across regimes and seeds, with plots and a report."""
