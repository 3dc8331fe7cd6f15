"""Stage `verify`: the promotion gate (paired tests of the RL model), registration and the champion alias."""

from __future__ import annotations

from components.config import Config


def run(cfg: Config) -> dict:
    from components.gate.promotion import verify_and_promote

    return verify_and_promote(cfg)
