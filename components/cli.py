"""Command line for the stages: `python -m components.cli STAGE [--params FILE] [--set key=value ...]`.

This is what dvc.yaml runs; configuration errors are reported before any stage work starts. Besides
the stages it runs the COMMANDS dvc.yaml needs (`fingerprint FILE OUT`: its input stages).
Expected failures (a bad setting or input, a missing file, a full disk) print one line (a failed
data validation: its summary) and exit 2 (fix a setting or an input) or 1 (the run failed); anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from components.config import ConfigError, load_config
from components.infra.runtime import configure_threads, limit_heap_growth, quiet_environment

# (module, exception class, exit status) of the failures a user fixes without reading a traceback.
# Looked up in sys.modules: an exception can only come from a module the stage imported, so the
# CLI imports none of them (some pull in torch). Subclasses match (ModelLoadError is a ConfigError).
EXPECTED = (
    ("components.config.schema_base", "ConfigError", 2),  # a setting only checkable once the stage runs
    ("components.infra.locks", "LockHeldError", 2),  # another run is writing this stage's outputs
    ("components.data.ingest", "IngestError", 2),
    ("components.data.prepare", "DataValidationError", 2),
    ("components.eval.benchmarks", "BenchmarkError", 2),
    ("components.infra.provenance", "ProvenanceError", 2),  # results of other weights: rerun evaluate
    ("components.infra.atomic_io", "UnsafeTargetError", 2),
    ("components.rl.checkpoint", "CheckpointMismatchError", 2),
    ("components.rl.checkpoint", "CorruptCheckpointError", 2),
    ("components.infra.tracking", "TrackingUnavailableError", 1),
    ("components.rl.update", "NonFiniteLossError", 1),
    ("builtins", "FileNotFoundError", 2),  # a missing input (an earlier stage not run)
)
# Commands besides the stages: name -> (module whose run(cfg, *paths) does it, the paths it takes).
# Imported only when run, like the stages, so a DVC stage depends only on the code it runs.
COMMANDS = {"fingerprint": ("components.data.fingerprint", ("FILE", "OUT"))}
DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def expected_failure(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit status) of an expected failure, None for a bug (which keeps its traceback)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        where = f"writing {exc.filename}" if exc.filename else "writing the stage's outputs"
        return f"{DISK_FULL[exc.errno]} {where}; free space there and rerun", 1
    for module, name, status in EXPECTED:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            if isinstance(exc, FileNotFoundError) and exc.filename:  # raised by the OS: "[Errno 2] ..."
                return f"file not found: {exc.filename}", status
            return str(exc), status
    return None


def start_up() -> None:
    """What every entry point does first: a quiet environment, the thread count, the heap's growth."""
    quiet_environment()
    configure_threads()
    limit_heap_growth()


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--params, --preset and --set, as load_config(args.params, args.overrides, args.preset) takes them."""
    parser.add_argument("--params", default=None, help="params file (default: params.yaml; advanced.yaml beside it "
                                                       "is merged in)")
    parser.add_argument("--preset", action="append", default=None, metavar="FILE",
                        help="partial params file layered over params.yaml, e.g. presets/gpu.yaml (repeatable; "
                             "default: $PIPO_PRESET)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. --set rl.lr=5e-5 (repeatable)")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)


def main(argv: list[str] | None = None) -> int:
    start_up()
    from components.stages import STAGE_NAMES, stage_function

    parser = argparse.ArgumentParser(prog="python -m components.cli", description=__doc__)
    parser.add_argument("stage", choices=STAGE_NAMES + tuple(COMMANDS))
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="fingerprint: the data file and the JSON to write (dvc.yaml's input stages run it)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    wanted = COMMANDS[args.stage][1] if args.stage in COMMANDS else ()
    if len(args.paths) != len(wanted):
        parser.error(f"{args.stage} takes {' '.join(wanted) or 'no paths'}, got {args.paths or 'none'}")
    configure_logging()
    try:
        cfg = load_config(args.params, args.overrides, args.preset)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.stage in COMMANDS:
            importlib.import_module(COMMANDS[args.stage][0]).run(cfg, *args.paths)
        else:
            stage_function(args.stage)(cfg)
    except Exception as exc:
        failure = expected_failure(exc)
        if failure is None:
            raise
        print(f"error: {failure[0]}", file=sys.stderr)
        return failure[1]
    return 0


if __name__ == "__main__":
    sys.exit(main())
