"""The pipeline flow: prepare -> sft -> rl -> evaluate -> verify, each task running `dvc repro` on one stage.

Why through DVC: DVC decides what is stale (a second run does nothing, a changed rl param reruns
only rl, evaluate and verify) and versions the outputs; Prefect adds retries, logs, a UI and deployments.
Both reach the same stage code (components/stages/STAGE.py via components/cli.py).

With `overrides` or a `preset` (`prefect deployment run 'pipo-pipeline/local' --param ...`), the run is a
DVC experiment instead (flows/experiment.py): params.yaml and the working tree's outputs stay as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Iterator

from components.infra.runtime import quiet_environment

quiet_environment()

from prefect import flow, get_run_logger, task  # noqa: E402

from components.config import PRESET_ENV, REPO_ROOT, load_config  # noqa: E402
from components.infra.tracking import (EXPERIMENT_TAG, OVERRIDES_ENV, OVERRIDES_TAG, PARENT_ENV,  # noqa: E402
                                       close_stale_runs, ensure_experiment, metric_key,
                                       process_tags, sigterm_raises)
from components.infra.run_records import (CONFIG_ARTIFACT, CONFIG_HASH_TAG, config_hash, run_name,  # noqa: E402
                                          stage_params)
from flows import experiment as dvc_experiment  # noqa: E402
from flows import report  # noqa: E402
from flows.processes import start, stop_tree  # noqa: E402
from flows.stage_outputs import kept_outputs  # noqa: E402

STAGES = ("prepare", "sft", "rl", "evaluate", "verify")


def _dvc() -> str:
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def _stream(cmd: list[str], env: dict[str, str], label: str, logger) -> tuple[int, list[str]]:
    """Run cmd in its own session, each output line into the Prefect log; its exit code and last lines.
    Stopping the flow (SIGTERM, Ctrl-C) stops the whole process tree (SIGKILL after a grace period)."""
    proc = start(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: deque[str] = deque(maxlen=30)
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if line.startswith("Running stage '"):  # dvc exp run: name the stage its lines come from
                label = line.split("'")[1]
            logger.info("[%s] %s", label, line)
        return proc.wait(), list(tail)
    except BaseException:  # SIGTERM (Prefect raises it here as TerminationSignal), Ctrl-C, a crash
        logger.warning("[%s] interrupted: stopping dvc and the stage", label)
        stop_tree(proc)
        raise
    finally:
        proc.stdout.close()


def _stage_env(parent_run_id: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, **{PARENT_ENV: parent_run_id}, **(extra or {}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@task(name="dvc-stage", retries=1, retry_delay_seconds=2, task_run_name="{stage}")
def run_stage(stage: str, parent_run_id: str, force: bool = False) -> None:
    """Run one DVC stage in the working tree, streaming its output into the Prefect log; fail with its
    last lines. A stopped or failed stage's previous outputs, which dvc deleted before running it, are
    put back (flows/stage_outputs.py)."""
    logger = get_run_logger()
    # prepare's only upstream stages are its input stages (one per data file): they run with it
    single = [] if stage == "prepare" else ["--single-item"]
    cmd = [_dvc(), "repro", *single, stage] + (["--force"] if force else [])
    with kept_outputs(stage, _dvc(), logger) as restore:
        try:
            code, tail = _stream(cmd, _stage_env(parent_run_id), stage, logger)
        except BaseException:
            restore()
            raise
        if code:
            restore()
            raise RuntimeError(f"stage {stage!r} failed (exit {code}):\n" + "\n".join(tail))


@task(name="dvc-exp-run", task_run_name="experiment {name}")
def run_experiment(name: str, settings: list[str], copy_paths: list[str], stages: list[str], force: bool,
                   parent_run_id: str, tags_env: dict[str, str]) -> None:
    """`dvc exp run --temp` with the settings: the stages run in DVC's copy of the repository."""
    logger = get_run_logger()
    cmd = dvc_experiment.exp_run_command(_dvc(), name, settings, copy_paths, stages, force)
    logger.info("dvc exp run --temp -n %s %s", name, " ".join(f"-S {s}" for s in settings))
    env = _stage_env(parent_run_id, tags_env)
    env.pop(PRESET_ENV, None)  # the preset's values are among the settings; the copy may lack its file
    code, tail = _stream(cmd, env, "experiment", logger)
    if code:
        raise RuntimeError(f"experiment {name!r} failed (exit {code}):\n" + "\n".join(tail))


@contextlib.contextmanager
def parent_run(cfg, tags: dict[str, str] | None = None) -> Iterator[object]:
    """The pipeline's MLflow run, tagged with this process (pid, host, start) like a stage's run, so
    the next flow start marks KILLED a parent run whose flow died without ending it (SIGKILL)."""
    import mlflow

    experiment_id = ensure_experiment(cfg)  # an unreachable MLflow store fails here, before any stage
    close_stale_runs(experiment_id, "pipeline")
    env = {"DVC_EXP_NAME": tags[EXPERIMENT_TAG]} if tags and EXPERIMENT_TAG in tags else {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name(cfg, "pipeline", env),
                          tags={"pipo.stage": "pipeline", **process_tags(), **(tags or {})}) as run:
        # the params of the stages (not compare.* or tracking.*), and the whole config as config.yaml
        mlflow.log_params({k: v for stage in STAGES for k, v in stage_params(cfg, stage).items()})
        mlflow.set_tag(CONFIG_HASH_TAG, config_hash(cfg))
        mlflow.log_dict(cfg.model_dump(mode="json"), CONFIG_ARTIFACT)
        yield run


def _record(cfg, run, results: dict, verdict: dict | None, files: list[Path], title: str) -> dict:
    """Log the eval metrics and result files on the parent run, print the table, publish the Prefect report
    (flows/report.py); the flow's result."""
    import mlflow

    mlflow.log_metrics({metric_key(f"eval/{m}/{b}/{k}"): float(v) for m, benches in results.items()
                        for b, d in benches.items() for k, v in d.items()})
    for path in files:
        mlflow.log_artifact(str(path))
    for model_name, benches in results.items():
        for bench, d in benches.items():
            print(f"{model_name:>9} {bench}: " + "  ".join(f"{k} {v:.3f}" for k, v in d.items()
                                                         if k != "num_problems"))
    if verdict is not None:
        print(f"   verify: promoted={verdict['promoted']}  registered v{verdict.get('registered_version')}")
    report.publish(results, verdict, run.info.run_id, run.info.experiment_id, mlflow.get_tracking_uri(),
                   cfg.registry.model_name, title)
    return {**results, "verify": verdict} if verdict is not None else results


def _up_to_date(stages: list[str]) -> bool:
    """Whether DVC finds every stage (and what it depends on) up to date; False when it cannot tell."""
    proc = subprocess.run([_dvc(), "status", "--json", *stages], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=_stage_env(""))
    try:
        return proc.returncode == 0 and json.loads(proc.stdout or "null") == {}
    except json.JSONDecodeError:
        return False


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


@flow(name="pipo-pipeline", log_prints=True)
def pipo_pipeline(stages: list[str] = list(STAGES), force: bool = False, overrides: list[str] | None = None,
                  preset: str | None = None, experiment: str | None = None) -> dict:
    """Run the pipeline's stages under one MLflow parent run; returns the eval metrics and the verdict.

    Args:
        stages: the stages to run, in order; DVC skips those that are up to date.
        force: rerun the stages even when DVC finds them up to date.
        overrides: settings as key=value, the syntax of `--set` (e.g. ["rl.iterations=50",
            "sft.enabled=false"]). With overrides, a preset or an experiment name, the run is a DVC
            experiment (`dvc exp run --temp`): params.yaml and the working tree's outputs are left as they
            are, `dvc exp show` lists it, `dvc exp apply NAME` brings it into the working tree.
        preset: a partial params file layered under the overrides (e.g. "presets/gpu.yaml").
        experiment: the DVC experiment's name (default: this flow run's name); its MLflow runs are
            tagged dvc.experiment=NAME.
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")
    if overrides or preset or experiment:
        return _experiment_run(stages, force, list(overrides or []), preset, experiment)
    cfg = load_config(REPO_ROOT / "params.yaml")  # a bad params file fails here, before any stage
    metrics, verdict = REPO_ROOT / cfg.eval.metrics_file, REPO_ROOT / cfg.verify.metrics_file
    if not force and _up_to_date(stages):  # no MLflow run for a run that runs nothing
        print("Data and pipelines are up to date: no stage ran (force=true reruns them)")
        return {**(_read_json(metrics) or {}), **({"verify": _read_json(verdict)} if verdict.exists() else {})}
    with parent_run(cfg) as run:
        for stage in stages:
            run_stage.with_options(name=stage)(stage, run.info.run_id, force)
        return _record(cfg, run, _read_json(metrics) or {}, _read_json(verdict),
                       [p for p in (metrics, verdict) if p.exists()], "Pipeline run (working tree)")


def _experiment_run(stages: list[str], force: bool, overrides: list[str], preset: str | None,
                    name: str | None) -> dict:
    """The flow's run as a DVC experiment (flows/experiment.py)."""
    import tempfile

    from prefect.runtime import flow_run

    presets = [preset] if preset else [p for p in os.environ.get(PRESET_ENV, "").split(",") if p.strip()]
    # Every setting is checked (and errors name it) before DVC copies anything.
    cfg = load_config(REPO_ROOT / "params.yaml", overrides, presets)
    name = dvc_experiment.check_name(name or flow_run.name or "pipeline")
    settings = dvc_experiment.set_params(overrides, presets)
    copy_paths = dvc_experiment.untracked_inputs(cfg)
    tags = {EXPERIMENT_TAG: name, OVERRIDES_TAG: " ".join(settings)[:5000]}
    with parent_run(cfg, tags) as run:
        print(f"DVC experiment {name}: " + " ".join(settings))
        run_experiment(name, settings, copy_paths, stages if stages != list(STAGES) else [], force,
                       run.info.run_id, {OVERRIDES_ENV: tags[OVERRIDES_TAG]})
        results = dvc_experiment.experiment_file(name, cfg.eval.metrics_file) or {}
        verdict = dvc_experiment.experiment_file(name, cfg.verify.metrics_file)
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for rel, content in ((cfg.eval.metrics_file, results), (cfg.verify.metrics_file, verdict)):
                if content is not None:
                    files.append(Path(tmp) / Path(rel).name)
                    files[-1].write_text(json.dumps(content, indent=2))
            recorded = _record(cfg, run, results, verdict, files, f"DVC experiment {name}")
    print(f"`dvc exp show` lists {name}; `dvc exp apply {name}` brings its params and outputs here")
    return recorded


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C: run_stage stops its dvc tree, and atexit stops the ephemeral
    # Prefect API server this process started (the default action would orphan it). Prefect's own
    # SIGTERM handler, active while the flow runs, re-sends the signal to this one when it is done.
    with sigterm_raises():
        pipo_pipeline(stages=sys.argv[1:] or list(STAGES))  # `python -m flows.pipeline [STAGE ...]`
