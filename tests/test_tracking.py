"""Connecting to the MLflow tracking store (faults during a run: tests/reliability/test_tracking_faults.py)."""

from __future__ import annotations

import time

import pytest

from components.config import load_config
from components.infra.tracking import TrackingUnavailableError, ensure_experiment
from tests.e2e_support import free_port


def test_an_unreachable_tracking_server_fails_fast():
    cfg = load_config(overrides=[f"tracking.tracking_uri=http://127.0.0.1:{free_port()}"])
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="cannot be reached"):
        ensure_experiment(cfg)
    assert time.monotonic() - start < 10
