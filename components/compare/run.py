"""`make compare`: where does PIPO pay? RL variants (GRPO, PIPO standard / authors / paired) in regimes
(default, high lr, small batches, a noisy verifier, a long run) over seeds, against SFT and a matched-time
continued-SFT control. The sweep (components/compare/sweep.py) runs the units and resumes an interrupted
sweep; the report (components/compare/report.py) is written to compare.report, every unit to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


from components.compare.report import record_invocation, write_report
from components.compare.sweep import log_unit_to_mlflow, plan_units, run_sweep
from components.config import ConfigError, load_config
from components.infra.runtime import configure_threads, limit_heap_growth, quiet_environment

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """`make compare`: run (or continue) the sweep, log each finished unit to MLflow, write the report."""
    quiet_environment()
    configure_threads()
    limit_heap_growth()
    parser = argparse.ArgumentParser(prog="python -m components.compare.run", description=__doc__)
    parser.add_argument("--params", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=None, help="units at once (default compare.jobs)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished units")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    try:
        cfg = load_config(args.params, args.overrides)
        units = plan_units(cfg, args.params, args.overrides)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(cfg.compare.out_dir).resolve()
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
            mlflow.log_params({"seeds": ",".join(map(str, cfg.compare.seeds)), "regimes": ",".join(cfg.compare.regimes),
                               "variants": ",".join(cfg.compare.variants), "iterations": cfg.compare.iterations})
            failed = run_sweep(units, out_dir, args.jobs or cfg.compare.jobs,
                               on_done=lambda name: log_unit_to_mlflow(out_dir, name, experiment_id,
                                                                        parent.info.run_id))
            report = write_report(cfg, out_dir)
            mlflow.log_artifacts(str(report.parent), "compare")
    else:
        report = write_report(cfg, out_dir)
    log.info("compare: report %s (%.0fs)%s", report, time.time() - start,
             f"; FAILED units: {failed}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
