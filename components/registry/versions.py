"""The MLflow model registry: every distinct RL model (by the content hash of its folder) one version
of one registered model, and the alias (`champion`) that marks the version in use."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import yaml

from components.config import REPO_ROOT
from components.infra.locks import file_lock

COMPONENTS_DIR = REPO_ROOT / "components"
MODEL_HASH_TAG = "model_hash"  # sha256 of the registered policy folder (components.infra.provenance.hash_path)


def log_policy(policy_dir: str | Path, max_new_tokens: int, name: str = "policy", chat_template: str = "auto"):
    """Log the policy folder as a pyfunc model in the active run; returns the ModelInfo. chat_template:
    how the model renders prompts (data.chat_template, as in training)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from components.registry.pyfunc_policy import POLICY_ARTIFACT

    example = pd.DataFrame({"prompt": ["12+34="]})
    signature = infer_signature(example, pd.DataFrame({"completion": ["x"], "answer": ["x"]}),
                                params={"max_new_tokens": max_new_tokens, "temperature": 0.0, "seed": 0})
    # The model carries its own copy of components/ (without bytecode caches) so it loads in any
    # environment that has the libraries, without this repository.
    with tempfile.TemporaryDirectory(prefix="pipo-code-") as tmp:
        code = Path(tmp) / "components"
        shutil.copytree(COMPONENTS_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return mlflow.pyfunc.log_model(
            # the copy's file: MLmodel records this path (model_code_path), which must not name the checkout
            name=name, python_model=str(code / "registry" / "pyfunc_policy.py"),
            artifacts={POLICY_ARTIFACT: str(policy_dir)}, code_paths=[str(code)], signature=signature,
            model_config={"max_new_tokens": max_new_tokens, "chat_template": chat_template}, input_example=example,
            pip_requirements=["torch", "transformers", "pandas", "pydantic", "pyyaml", "math-verify"],
        )


@contextlib.contextmanager
def registration_lock(model_name: str) -> Iterator[None]:
    """Serialise find-or-register-and-alias of `model_name` between processes (waits for the holder).

    For a sqlite store the lock file lies beside the database, so every checkout sharing that store
    shares it. For a remote tracking server it lies in this machine's temp folder, keyed by the server's
    URI: it keeps apart the verifies of ONE machine only (MLflow's registry has no compare-and-set).
    """
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
    else:
        folder = Path(tempfile.gettempdir()) / "pipo-registry-locks" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name)
    with file_lock(folder / f".registry-{slug}.lock", f"registering {model_name}", wait=True):
        yield


def register(model_uri: str, model_name: str, tags: dict[str, str]):
    """A new version of `model_name` from `model_uri`, with tags; returns the ModelVersion."""
    import mlflow
    from mlflow import MlflowClient

    version = mlflow.register_model(model_uri, model_name, tags={k: str(v) for k, v in tags.items()})
    return MlflowClient().get_model_version(model_name, version.version)


def find_version(model_name: str, model_hash: str, alias: str | None = None):
    """The version registered from the model folder with this content hash (tag MODEL_HASH_TAG), or None.

    Registration is idempotent per model: verify reruns on the same weights reuse this version. Should
    several carry the hash (versions registered before the tag was unique), the one holding `alias`
    wins, else the newest.
    """
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(
        f"name = '{model_name}' AND tags.{MODEL_HASH_TAG} = '{model_hash}'")
    found = [v for v in found if (v.tags or {}).get(MODEL_HASH_TAG) == model_hash]
    if not found:
        return None
    holder = current_champion(model_name, alias) if alias is not None else None  # search results lack aliases
    held = str(holder.version) if holder is not None else None
    return max(found, key=lambda v: (str(v.version) == held, int(v.version)))


def current_champion(model_name: str, alias: str):
    """The ModelVersion holding `alias`, or None (no such model or alias yet)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def set_alias(model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, version)


def tag_version(model_name: str, version: str, tags: dict[str, str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))


def describe(model_name: str, description: str, version: str | None = None) -> None:
    """Set the description (markdown) of the registered model, or of one of its versions."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if version is None:
        client.update_registered_model(model_name, description=description)
    else:
        client.update_model_version(model_name, version, description=description)


def download_policy(model_name: str, version: str, dst: Path) -> Path:
    """The policy folder inside a registered version (to re-evaluate a champion)."""
    import mlflow

    from components.registry.pyfunc_policy import POLICY_ARTIFACT

    root = Path(mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}", dst_path=str(dst)))
    spec = yaml.safe_load((root / "MLmodel").read_text())
    return root / spec["flavors"]["python_function"]["artifacts"][POLICY_ARTIFACT]["path"]


def data_version(lock_file: Path = REPO_ROOT / "dvc.lock", stage: str = "prepare") -> str:
    """The DVC hash of the prepared data (its output in dvc.lock), or 'unknown'."""
    try:
        lock = yaml.safe_load(lock_file.read_text())
        outs = lock["stages"][stage]["outs"]
        return ",".join(f"{o['path']}:{o.get('md5', '?')}" for o in outs)
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "unknown"


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD's commit, with '+dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
