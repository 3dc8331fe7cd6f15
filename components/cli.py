"""Command line for the stages: `python -m components.cli STAGE [--params FILE] [--set key=value ...]`.

This is what dvc.yaml runs; configuration errors are reported before any stage work starts.
"""

from __future__ import annotations

import argparse
import logging
import sys

from components.config import ConfigError, load_config
from components.infra.runtime import configure_threads, limit_heap_growth, quiet_environment


def main(argv: list[str] | None = None) -> int:
    quiet_environment()
    configure_threads()
    limit_heap_growth()
    from components.stages import STAGE_NAMES, stage_function

    parser = argparse.ArgumentParser(prog="python -m components.cli", description=__doc__)
    parser.add_argument("stage", choices=STAGE_NAMES)
    parser.add_argument("--params", default=None, help="params file (default: params.yaml)")
    parser.add_argument("--preset", action="append", default=None, metavar="FILE",
                        help="partial params file layered over params.yaml, e.g. presets/gpu.yaml (repeatable; "
                             "default: $PIPO_PRESET)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. --set rl.lr=5e-5 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    try:
        cfg = load_config(args.params, args.overrides, args.preset)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        stage_function(args.stage)(cfg)
    except ConfigError as exc:  # a setting only checkable once the stage has loaded its model
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
