"""An example reward in verl's `compute_score` signature, for the arithmetic task (chain_sum).

Use it, or a file of your own in this folder, from params.yaml:

    reward:
      functions: ["rewards/example.py:compute_score"]

or several functions, weighted (TRL-style): [{path: "rewards/example.py:compute_score", weight: 1.0},
{path: "rewards/mine.py:brevity", weight: 0.1}]. dvc.yaml lists this folder as a dependency of the
rl, evaluate and verify stages, so editing a file here re-runs them. See docs/verifiers.md.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """1.0 when the last \\boxed{} holds the reference integer, else 0.0."""
    boxes = _BOXED.findall(solution_str)
    truths = ground_truth if isinstance(ground_truth, (list, tuple)) else [ground_truth]
    if not boxes:
        return 0.0
    try:
        answer = int(boxes[-1].strip())
        return float(any(answer == int(str(truth).strip()) for truth in truths))
    except ValueError:  # not an integer (or a reference that is not one)
        return 0.0
