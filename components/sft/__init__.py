"""SFT warm start: the training loop, its token-budget step, and the continued-SFT control."""
