"""Verifiable rewards: answer extraction, math equivalence, reasoning-gym tasks, and the scoring pool."""
