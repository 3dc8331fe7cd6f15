"""RL stage: base algorithms (advantages, losses) in registries, and the training loop."""
