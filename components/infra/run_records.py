"""What a stage's MLflow run records besides its metrics, so the UI answers "what ran on what":

- a run name that says what ran: stage, for the RL side the algorithm and PIPO on/off, and the DVC
  experiment name (DVC sets DVC_EXP_NAME during `dvc exp run`) or else a short hash of the config;
- the params that stage reads, taken from the stage's `params:` in dvc.yaml (the one list of them,
  which DVC also uses to decide what is stale), and the full resolved config as the artifact config.yaml;
- the data it read (or, for prepare, wrote) as MLflow dataset inputs: name, digest = the file's md5
  (what DVC records for a file), source = the path as configured, row count (the dataset's profile);
- figures (components/infra/run_plots.py) as PNG artifacts.

Call these only in the process that owns the run (rank 0): `stage_run` opens no run on other ranks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from components.config import REPO_ROOT, Config

log = logging.getLogger(__name__)

DVC_FILE = REPO_ROOT / "dvc.yaml"
EXP_ENV = "DVC_EXP_NAME"  # set by DVC in the stages' environment during `dvc exp run`
CONFIG_ARTIFACT = "config.yaml"
CONFIG_HASH_TAG = "pipo.config_hash"
SEP = " · "
# runs whose result is the RL model (the pipeline's parent run too): their names say which algorithm
RL_SIDE = ("rl", "evaluate", "verify", "pipeline")


def config_hash(cfg: Config) -> str:
    """8 hex digits of the resolved config without `tracking` (where a run is logged is not what ran):
    the same for every stage of one pipeline run, different when any setting differs."""
    tree = cfg.model_dump(mode="json", exclude={"tracking"})
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:8]


def algorithm_label(cfg: Config) -> str:
    """e.g. "grpo+pipo" or "dapo"."""
    return cfg.rl.algorithm + ("+pipo" if cfg.rl.pipo.enabled else "")


def run_name(cfg: Config, stage: str, env: Mapping[str, str] = os.environ) -> str:
    """e.g. "rl · grpo+pipo · swank-rind" in a DVC experiment, "rl · grpo · cfg-1a2b3c4d" otherwise."""
    parts = ["sft (skipped)" if stage == "sft" and not cfg.sft.enabled else stage]
    if stage in RL_SIDE:
        parts.append(algorithm_label(cfg))
    parts.append(env.get(EXP_ENV) or f"cfg-{config_hash(cfg)}")
    return SEP.join(parts)


def stage_param_keys(stage: str, dvc_file: Path = DVC_FILE) -> list[str] | None:
    """The dotted params.yaml keys the stage lists under `params:` in dvc.yaml; None when dvc.yaml has
    no such stage (or cannot be read)."""
    try:
        stages = yaml.safe_load(dvc_file.read_text())["stages"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        log.warning("cannot read the stages of %s (%s); logging every param", dvc_file, exc)
        return None
    if stage not in stages:
        return None
    keys: list[str] = []
    for entry in stages[stage].get("params") or []:
        # `- key` reads params.yaml; `- file.yaml: [keys]` names the file: only params.yaml is the config
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            keys.extend(k for f, ks in entry.items() if Path(f).name == "params.yaml" for k in ks or [])
    return keys


def stage_params(cfg: Config, stage: str, dvc_file: Path = DVC_FILE) -> dict[str, Any]:
    """The flat params (Config.flat) under the keys the stage lists in dvc.yaml; every param for a stage
    dvc.yaml does not define."""
    flat = cfg.flat()
    keys = stage_param_keys(stage, dvc_file)
    if keys is None:
        return flat
    picked = {k: v for k, v in flat.items() if any(k == key or k.startswith(key + ".") for key in keys)}
    unknown = [key for key in keys if not any(k == key or k.startswith(key + ".") for k in flat)]
    if unknown:
        log.warning("dvc.yaml stage %s lists params the config lacks: %s", stage, ", ".join(unknown))
    return picked


def log_stage_config(cfg: Config, stage: str) -> None:
    """The stage's params, the config hash its run name may carry, and the whole resolved config."""
    import mlflow

    mlflow.log_params(stage_params(cfg, stage))
    mlflow.set_tag(CONFIG_HASH_TAG, config_hash(cfg))
    mlflow.log_dict(cfg.model_dump(mode="json"), CONFIG_ARTIFACT)


def file_md5(path: str | Path) -> str:
    """The file's md5, as DVC records it for each file of an output (32 hex digits: MLflow keeps at most 36)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source_path(path: Path) -> str:
    """The path relative to the working directory (the project root, where DVC runs stages) when it is
    inside it: an absolute path would name the user's folders."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    return resolved.relative_to(cwd).as_posix() if resolved.is_relative_to(cwd) else path.as_posix()


def log_dataset(name: str, path: str | Path, context: str, frame=None) -> None:
    """Log the file at `path` as a dataset input of the active run. frame: its rows as the stage used
    them (e.g. after a benchmark's `limit`), else the file is read; they give the schema and row count."""
    import mlflow
    import pandas as pd
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    path = Path(path)
    if frame is None:
        frame = pd.read_parquet(path)
    # An explicit "local" source: a bare path string is ambiguous to MLflow's resolver (it warns).
    source = get_dataset_source_from_json(json.dumps({"uri": _source_path(path)}), source_type="local")
    dataset = mlflow.data.from_pandas(frame, source=source, name=name, digest=file_md5(path))
    mlflow.log_input(dataset, context=context)


def log_split_inputs(cfg: Config, splits: list[str], context: str, frames: Mapping[str, Any] | None = None) -> None:
    """The prepared splits (data.out_dir/SPLIT.parquet) as dataset inputs named by split."""
    frames = frames or {}
    for split in splits:
        log_dataset(split, Path(cfg.data.out_dir) / f"{split}.parquet", context, frames.get(split))


def log_benchmark_inputs(cfg: Config, benchmarks: Mapping[str, Any], context: str = "eval") -> None:
    """The benchmarks as loaded ({name: rows}) as dataset inputs named by benchmark, sourced from their files."""
    from components.infra.provenance import benchmark_path

    specs = {b.name: b for b in cfg.eval.benchmarks}
    for name, frame in benchmarks.items():
        log_dataset(name, benchmark_path(specs[name], cfg.data.out_dir), context, frame)


def log_figures(figures: Mapping[str, Any]) -> None:
    """Each matplotlib figure as a PNG artifact at its key (e.g. "plots/rl_reward.png"), then closed."""
    import matplotlib.pyplot as plt
    import mlflow

    for artifact_file, fig in figures.items():
        try:
            mlflow.log_figure(fig, artifact_file)
        finally:
            plt.close(fig)
