"""Promotion gate: the paired statistics and the promote-or-not decision of the verify stage."""
