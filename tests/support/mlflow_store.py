"""Fixtures for tests that log to a throwaway MLflow store: import them into a test module."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from components.config import REPO_ROOT
from components.infra.run_records import EXP_ENV


def empty_store(db: Path) -> str:
    """A copy of an empty, migrated sqlite store at db; returns its URI.

    Creating a store runs MLflow's schema migrations (5-7 s of CPU each time); the suite makes dozens,
    so each is copied from one made per MLflow version. Tests of store creation itself
    (tests/infra/test_tracking_races.py) start from no file instead.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), db)
    return f"sqlite:///{db}"


def _template() -> Path:
    import mlflow
    from mlflow.tracking import MlflowClient

    path = Path(tempfile.gettempdir()) / f"pipo-tests-mlflow-{mlflow.__version__}-{os.getuid()}.db"
    if not path.exists():  # made beside it and renamed: a parallel worker never copies a half-made one
        fd, partial = tempfile.mkstemp(suffix=".db", dir=path.parent)
        os.close(fd)
        os.unlink(partial)
        MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments()
        os.replace(partial, path)
    return path


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """One sqlite store for the module; each test reads only its own runs."""
    return empty_store(tmp_path_factory.mktemp("store") / "mlflow.db")


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
