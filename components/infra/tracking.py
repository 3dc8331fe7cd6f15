"""MLflow tracking: one experiment, a parent run per pipeline run, a nested run per stage.

Stages run in their own processes (DVC calls them), so nesting crosses processes: the pipeline
flow creates the parent run and passes its id in PIPO_PARENT_RUN_ID; a stage started by plain
`dvc repro` has no parent and logs a top-level run tagged with its stage.

Failure behaviour: MLflow's HTTP client is bounded by `tracking.request_timeout_s`, `max_retries`
and `backoff_factor` (its defaults retry a dead server for about 4 minutes per call). A stage run
ends FINISHED, FAILED (an exception) or KILLED (SIGTERM or Ctrl-C). A run whose process died
without a word (SIGKILL, power loss) is tagged with that process's pid, host and start time, so the
next start of the same stage on that host marks it KILLED.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

from components.config import REPO_ROOT, Config
from components.infra.run_records import log_stage_config, run_name

log = logging.getLogger(__name__)

PARENT_ENV = "PIPO_PARENT_RUN_ID"
EXPERIMENT_TAG = "dvc.experiment"  # the DVC experiment a run belongs to (DVC_EXP_NAME, set by `dvc exp run`)
OVERRIDES_TAG = "pipo.overrides"  # the settings it changed (`-S` of a deployment run, flows/experiment.py)
OVERRIDES_ENV = "PIPO_OVERRIDES"


def store_root() -> Path:
    """The working tree whose mlflow/ folder holds the embedded store. `dvc exp run --temp` (and queued
    experiments) run the stages in a copy under .dvc/tmp/exps that is deleted afterwards: their runs go
    to the store of the working tree the copy was made from (DVC_ROOT), not into the copy."""
    dvc_root = os.environ.get("DVC_ROOT")
    if dvc_root and REPO_ROOT.is_relative_to(Path(dvc_root) / ".dvc" / "tmp" / "exps"):
        return Path(dvc_root)
    return REPO_ROOT


MLFLOW_DIR = store_root() / "mlflow"
PID_TAG, HOST_TAG, PROCESS_START_TAG = "pipo.pid", "pipo.host", "pipo.process_start"
END_REASON_TAG = "pipo.end_reason"
SOURCE_TAG = "mlflow.source.name"  # the UI's "Source" column


class TrackingUnavailableError(RuntimeError):
    pass


class StageTerminated(SystemExit):
    """SIGTERM inside a stage run: unwinds like Ctrl-C (cleanups run, the run is marked KILLED) and
    exits with the usual 128 + signal status."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def configure_http(cfg: Config) -> None:
    """Bound MLflow's HTTP retries by advanced.yaml's `tracking` settings (MLflow reads these on every
    request, so setting them before the first request is enough; the settings win over the environment)."""
    t = cfg.tracking
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(t.request_timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(t.max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(t.backoff_factor)


def tracking_uri(cfg: Config) -> str:
    """tracking.tracking_uri (advanced.yaml) wins, then MLFLOW_TRACKING_URI, then the embedded sqlite store under mlflow/."""
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{MLFLOW_DIR / 'mlflow.db'}"


def ensure_experiment(cfg: Config) -> str:
    """Point MLflow at the store and return the experiment id, creating it if needed.

    Raises TrackingUnavailableError with the URI when the store cannot be reached, so a
    misconfigured store fails before any training starts, not after it.
    """
    import mlflow

    configure_http(cfg)
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        _probe_server(uri, cfg.tracking.request_timeout_s)
    mlflow.set_tracking_uri(uri)
    try:
        with _sqlite_init_lock(uri):
            return _experiment_id(cfg.tracking.experiment, uri)
    except Exception as exc:  # MLflow raises many types for an unreachable store
        raise TrackingUnavailableError(f"MLflow tracking store {uri} cannot be reached: {exc}") from exc


def _experiment_id(name: str, uri: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not in ./mlruns of the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    try:
        # The experiment's kind, as MLflow's UI would set it. MLflow 3.17's UI does not read it when it picks
        # the page an experiment opens on: its browser-wide GenAI / Machine learning switch does, which
        # mlflow/ui.sh sets (mlflow/ui_plugin/pipo_mlflow_ui.py).
        return mlflow.create_experiment(name, artifact_location=location,
                                        tags={"mlflow.experimentKind": "custom_model_development"})
    except Exception:
        exp = mlflow.get_experiment_by_name(name)  # another process (on a server) created it meanwhile
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def _sqlite_init_lock(uri: str) -> Iterator[None]:
    """For an embedded sqlite store: an exclusive flock beside the database while this process opens it
    and finds or creates the experiment. MLflow creates the tables and runs its schema migrations on
    the first connection; two stages doing that at once on a fresh store fail ("duplicate column"),
    which would read as an unreachable store. The kernel drops the lock when its holder exits."""
    import fcntl

    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db.parent / f".{db.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _probe_server(uri: str, timeout_s: float = 5.0) -> None:
    """One quick GET of the server's health endpoint: MLflow's own client retries an unreachable
    server with backoff for minutes before it gives up."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            if resp.status >= 400:
                raise TrackingUnavailableError(f"MLflow tracking server {uri} answered HTTP {resp.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailableError(f"MLflow tracking server {uri} cannot be reached: {exc}") from exc


def is_main_process() -> bool:
    """Rank 0 of an `accelerate launch` (or a plain process): the only one that talks to MLflow, so
    a multi-process stage is one run, not one per rank racing on the store."""
    return int(os.environ.get("RANK", "0")) == 0


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, boot id + start time in clock ticks) of a live process, from /proc; None where
    there is no /proc (the pid alone then decides)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], f"{boot}:{fields[19]}"


def entry_point() -> str:
    """The running script relative to the repository (`components/cli.py`), else its file name. MLflow
    would tag the run with its absolute path, which names the user's folders and differs per checkout."""
    script = sys.argv[0] if sys.argv else ""
    if script in ("", "-c", "-m"):
        return f"python {script}".strip()
    path = Path(script).resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name


def process_tags() -> dict[str, str]:
    """Tags of the process that opens a run: what close_stale_runs judges it by, and its entry point
    (set here, as MLflow's own value would be absolute)."""
    state = _process_state(os.getpid())
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), PROCESS_START_TAG: state[1] if state else "",
            SOURCE_TAG: entry_point()}


def experiment_tags() -> dict[str, str]:
    """The DVC experiment this process runs in, and the settings its deployment run changed."""
    tags = {}
    if os.environ.get("DVC_EXP_NAME"):
        tags[EXPERIMENT_TAG] = os.environ["DVC_EXP_NAME"]
    if os.environ.get(OVERRIDES_ENV):
        tags[OVERRIDES_TAG] = os.environ[OVERRIDES_ENV][:5000]
    return tags


def _process_gone(tags: dict[str, str]) -> bool:
    """Whether the process that opened a run is certainly dead: it ran on this host and its pid is
    gone, a zombie, or now another process (a different start time). Runs from other hosts, or
    without the tags, are never judged."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by someone else
    state = _process_state(pid)
    if state is None:
        return False
    return state[0] == "Z" or bool(tags.get(PROCESS_START_TAG)) and state[1] != tags[PROCESS_START_TAG]


def close_stale_runs(experiment_id: str, stage: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `stage` whose process died (e.g. by SIGKILL); their ids."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        runs = client.search_runs([experiment_id], f"tags.`pipo.stage` = '{stage}' and attributes.status = 'RUNNING'",
                                  max_results=1000)
    except Exception as exc:  # a sweep that cannot run must not stop the stage
        log.warning("could not look for stale %s runs: %s", stage, exc)
        return []
    closed = []
    for run in runs:
        if not _process_gone(run.data.tags):
            continue
        reason = f"process {run.data.tags[PID_TAG]} on {run.data.tags[HOST_TAG]} died without ending the run"
        try:
            client.set_tag(run.info.run_id, END_REASON_TAG, reason)
            client.set_terminated(run.info.run_id, "KILLED")
        except Exception as exc:
            log.warning("could not mark stale run %s KILLED: %s", run.info.run_id, exc)
            continue
        log.warning("marked MLflow run %s (%s) KILLED: %s", run.info.run_id, stage, reason)
        closed.append(run.info.run_id)
    return closed


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into StageTerminated while a stage runs (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise StageTerminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _end_run(run_id: str, status: str, reason: str | None) -> None:
    """End the stage's run with `status`; a store that fails here (it may be what failed the stage)
    is logged, never raised over the stage's own exception."""
    import mlflow

    try:
        if reason:
            mlflow.MlflowClient().set_tag(run_id, END_REASON_TAG, reason[:5000])
    except Exception as exc:
        log.warning("could not tag MLflow run %s with why it ended: %s", run_id, exc)
    try:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)  # pops the run before it calls the store, so it is popped even if that fails
        else:
            mlflow.MlflowClient().set_terminated(run_id, status)
    except Exception as exc:
        log.warning("could not mark MLflow run %s %s: %s", run_id, status, exc)


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str) -> Iterator[object]:
    """A run for one stage, nested under the pipeline's parent run when there is one (rank 0 only).

    Ends FINISHED, FAILED on an exception, or KILLED on SIGTERM / KeyboardInterrupt; first marks
    KILLED this stage's runs left RUNNING by a process that died on this host.
    """
    import mlflow

    if not is_main_process():
        yield None
        return
    experiment_id = ensure_experiment(cfg)
    close_stale_runs(experiment_id, stage)
    tags = {"pipo.stage": stage, **process_tags(), **experiment_tags()}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name(cfg, stage), tags=tags)
    status, reason = "FAILED", None
    try:
        with sigterm_raises():
            log_stage_config(cfg, stage)  # the params the stage reads; the whole config as config.yaml
            yield run
        status = "FINISHED"
    except (KeyboardInterrupt, StageTerminated) as exc:
        status = "KILLED"
        reason = signal.Signals(exc.signum).name if isinstance(exc, StageTerminated) else "KeyboardInterrupt"
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        _end_run(run.info.run_id, status, reason)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    if is_main_process():
        mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    if not is_main_process():
        return
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def metric_key(name: str) -> str:
    """MLflow metric names allow [/\\w.\\- :]; '@' (pass@1) becomes '_at_'."""
    return name.replace("@", "_at_")
