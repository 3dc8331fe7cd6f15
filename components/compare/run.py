"""`make compare`: is it PIPO's feedback or one more step? RL variants (compare.yaml: GRPO, GRPO with two
steps, PIPO, PIPO with a random sign, PIPO in one joint step, each with and without the verified-improvement
guard) in regimes (default, high lr, a noisy verifier) over seeds, against SFT (and, when compare.control
is on, a matched-time continued-SFT control). The sweep (components/compare/sweep.py) runs the units and resumes an interrupted
sweep; the report (components/compare/report.py) is written to compare.report, every unit to MLflow.

Settings: compare.yaml (the harness: seeds, regimes, variants; components/compare/settings.py) and the
runs' own params.yaml + advanced.yaml, with the stage CLI's --params, --preset and --set (a --set of a
compare.* key changes compare.yaml's setting, any other key every run's).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from components.cli import add_config_arguments, configure_logging, start_up
from components.compare.report import record_invocation, write_report
from components.compare.settings import check_compare_paths, load_compare, split_overrides
from components.compare.sweep import log_unit_to_mlflow, plan_units, run_sweep
from components.config import DEFAULT_PARAMS, ConfigError, load_config

log = logging.getLogger(__name__)


def check_unit_configs(units) -> None:
    """Load every distinct run config of the plan now, so a misspelt override in compare.yaml is an error
    before the sweep starts rather than a failed unit hours into it."""
    seen: set[tuple] = set()
    for u in units:
        key = (u.spec.params, tuple(u.spec.overrides), tuple(u.spec.presets or ()))
        if key in seen:
            continue
        seen.add(key)
        try:
            load_config(u.spec.params, u.spec.overrides, u.spec.presets)
        except ConfigError as exc:
            raise ConfigError(f"unit {u.spec.name} (its overrides come from compare.yaml): {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """`make compare`: run (or continue) the sweep, log each finished unit to MLflow, write the report."""
    start_up()
    parser = argparse.ArgumentParser(prog="python -m components.compare.run", description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--compare", default=None, metavar="FILE", help="the harness's settings (default: compare.yaml)")
    parser.add_argument("--jobs", type=int, default=None, help="units at once (default compare.jobs)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished units")
    parser.add_argument("--plan", action="store_true", help="print the units the sweep would run, in order, and exit")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        run_sets, compare_sets = split_overrides(args.overrides)
        cfg = load_config(args.params, run_sets, args.preset)
        c = load_compare(args.compare, compare_sets)
        check_compare_paths(cfg, c, args.params or DEFAULT_PARAMS)
        units = plan_units(c, args.params, run_sets, args.preset)
        check_unit_configs(units)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.plan:
        for u in units:
            print(f"{u.spec.name}\t{u.spec.kind}\t{' '.join(u.spec.overrides)}")
        return 0
    out_dir = Path(c.out_dir).resolve()
    start = time.time()
    failed: list[str] = []
    if not args.report_only:
        record_invocation(out_dir, ["python -m components.compare.run", *(argv if argv is not None else sys.argv[1:])])
        import mlflow

        from components.infra.tracking import configure_http, ensure_experiment, sigterm_raises

        configure_http(cfg)
        experiment_id = ensure_experiment(cfg)
        # SIGTERM (a session's end, `kill`) raises, so the sweep stops its units and the run is marked failed
        with sigterm_raises(), mlflow.start_run(experiment_id=experiment_id, run_name="compare",
                                                tags={"pipo.stage": "compare"}) as parent:
            mlflow.log_params({"seeds": ",".join(map(str, c.seeds)), "regimes": ",".join(c.regimes),
                               "variants": ",".join(c.variants), "iterations": c.iterations})
            failed = run_sweep(units, out_dir, args.jobs or c.jobs,
                               on_done=lambda name: log_unit_to_mlflow(out_dir, name, experiment_id,
                                                                        parent.info.run_id))
            report = write_report(cfg, c, out_dir)
            mlflow.log_artifacts(str(report.parent), "compare")
    else:
        report = write_report(cfg, c, out_dir)
    log.info("compare: report %s (%.0fs)%s", report, time.time() - start,
             f"; FAILED units: {failed}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
