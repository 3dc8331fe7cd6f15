"""Fixtures for tests that log to a throwaway MLflow store: import them into a test module."""

from __future__ import annotations

import shutil

import pytest

from components.config import REPO_ROOT
from components.infra.run_records import EXP_ENV


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """One sqlite store for the module (creating one takes seconds); each test reads only its own runs."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture()
def store(tmp_path, monkeypatch, database):
    """A project folder of its own (params.yaml copied), logging to the module's store, outside any DVC
    experiment."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", database)
    monkeypatch.delenv("PIPO_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv(EXP_ENV, raising=False)
    return tmp_path
