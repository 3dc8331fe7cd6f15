"""Evaluation: benchmarks, pass@1 / mean@k / pass@k / maj@k of a policy, per-problem tables."""
