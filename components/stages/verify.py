"""Stage `verify`: the promotion gate (paired tests of the RL model), registration and the champion alias."""

from __future__ import annotations

from components.config import Config
from components.infra.locks import locked_stage


@locked_stage("verify", lambda cfg: [cfg.verify.out_dir, cfg.verify.metrics_file])
def run(cfg: Config) -> dict:
    from components.gate.promotion import verify_and_promote

    return verify_and_promote(cfg)
