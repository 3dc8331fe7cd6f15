"""The comparison sweep (`make compare`): regimes x variants x seeds, resumable, `compare.jobs` at a time.

Units (components/compare/units.py): each seed's SFT warm start, then every RL run from it (a regime's
overrides on top of a variant's on top of compare.overrides), then the matched-time continued-SFT control
of each seed. Each unit runs in a process of its own with one torch thread and writes its folder under
compare.out_dir whole or not at all; units whose folder exists are not redone, so an interrupted sweep
continues where it stopped. Seeds are interleaved across regimes: after k seeds every regime has k (or all of
its own, if it runs fewer).

The coordinator (this process) logs each finished unit to MLflow (one run per unit, nested under one
`compare` run; the sqlite store then has a single writer) and writes the report at the end.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.compare.settings import CompareConfig
from components.compare.units import UnitSpec
from components.infra.atomic_io import claim_dir

log = logging.getLogger(__name__)

REGIME_SECTIONS = ("rl.", "rollout.", "reward.")  # what a regime may change: never the shared SFT start


@dataclass
class Planned:
    spec: UnitSpec
    needs: list[str] = field(default_factory=list)  # unit names that must be complete first


def rl_name(regime: str, variant: str, seed: int) -> str:
    return f"runs/{regime}/{variant}/s{seed}"


def plan_units(c: CompareConfig, params: str | None, cli_overrides: list[str],
               presets: list[str] | None = None) -> list[Planned]:
    """Every unit of the sweep in launch order (SFT, then RL with seeds interleaved, then controls); a regime
    runs its own seeds (compare.regimes.<name>.seeds, default compare.seeds), each from that seed's SFT.
    params, cli_overrides, presets: how each unit loads its config (the caller has checked they load)."""
    for name, regime in c.regimes.items():
        for key in regime.overrides:
            if not key.startswith(REGIME_SECTIONS):
                raise ValueError(f"compare.regimes.{name}: override {key!r} must set an rl., rollout. or reward. "
                                 "key (every regime starts from the same SFT model)")
    base = list(cli_overrides) + [f"rl.iterations={c.iterations}"] + list(c.overrides)
    units = [Planned(UnitSpec("sft", f"sft/s{seed}", seed, list(cli_overrides), params, presets=presets))
             for seed in c.all_seeds()]
    for seed in c.all_seeds():
        for regime_name, regime in c.regimes.items():
            if seed not in c.regime_seeds(regime_name):
                continue
            for variant in regime.variants:
                overrides = base + list(c.variants[variant]) + list(regime.overrides)
                units.append(Planned(UnitSpec("rl", rl_name(regime_name, variant, seed), seed, overrides, params,
                                              sft_dir=f"sft/s{seed}/model", presets=presets), needs=[f"sft/s{seed}"]))
    if c.control:
        regime = c.regimes[c.control_regime]
        for seed in c.regime_seeds(c.control_regime):
            runs = [rl_name(c.control_regime, v, seed) for v in regime.variants]
            units.append(Planned(UnitSpec("control", rl_name(c.control_regime, "continued_sft", seed), seed,
                                          base + list(regime.overrides), params, sft_dir=f"sft/s{seed}/model",
                                          budget_from=runs, control_lr=c.control_lr, presets=presets),
                                 needs=[f"sft/s{seed}"] + runs))
    return units


def is_done(out_dir: Path, name: str) -> bool:
    return (out_dir / name / "result.json").exists()


def run_sweep(units: list[Planned], out_dir: Path, jobs: int, on_done=lambda name: None,
              python: str = sys.executable) -> list[str]:
    """Run every unit not yet complete, `jobs` processes at a time, each when its needs are complete.
    on_done(name) is called in this process for each unit that completes (and each found complete).
    Returns the names of the units that failed (their needs-dependants are not started)."""
    claim_dir(out_dir)  # outside the repository, a folder the pipeline marks as its own (atomic_io)
    spec_dir = out_dir / ".specs"
    spec_dir.mkdir(exist_ok=True)
    pending = [u for u in units if not is_done(out_dir, u.spec.name)]  # "waiting" counts only these
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    failed: list[str] = []
    env = {**os.environ, "PIPO_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for u in units:
        if is_done(out_dir, u.spec.name):
            on_done(u.spec.name)
    try:
        _loop(pending, running, failed, out_dir, spec_dir, jobs, env, python, on_done)
    finally:  # interrupted: stop the units in flight (their .partial folders are redone next time)
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
    return failed


def _loop(pending, running, failed, out_dir, spec_dir, jobs, env, python, on_done) -> None:
    while pending or running:
        for name, (proc, started) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode == 0 and is_done(out_dir, name):
                log.info("compare: %s done in %.0fs", name, time.time() - started)
                on_done(name)
            else:
                log.error("compare: %s failed (exit %s); log: %s", name, proc.returncode, _log_path(out_dir, name))
                failed.append(name)
        for u in list(pending):
            name = u.spec.name
            if is_done(out_dir, name):
                pending.remove(u)
                continue
            if any(n in failed for n in u.needs) or any(n in failed for n in u.spec.budget_from):
                pending.remove(u)
                failed.append(name)
                continue
            if len(running) >= jobs or not all(is_done(out_dir, n) for n in u.needs):
                continue
            spec = UnitSpec(**{**u.spec.__dict__, "sft_dir": str(out_dir / u.spec.sft_dir) if u.spec.sft_dir else None})
            spec_file = spec_dir / (name.replace("/", "__") + ".json")
            spec_file.write_text(spec.to_json())
            log_file = _log_path(out_dir, name)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "w") as sink:
                proc = subprocess.Popen([python, "-m", "components.compare.units", str(spec_file), str(out_dir)],
                                        stdout=sink, stderr=subprocess.STDOUT, env=env)
            running[name] = (proc, time.time())
            pending.remove(u)
            log.info("compare: started %s (%d running, %d waiting)", name, len(running), len(pending))
        if running:
            time.sleep(1.0)
        elif pending and not any(all(is_done(out_dir, n) for n in u.needs) for u in pending):
            break  # nothing can start: every waiting unit needs one that failed


def _log_path(out_dir: Path, name: str) -> Path:
    return out_dir / ".logs" / (name.replace("/", "__") + ".log")


def log_unit_to_mlflow(out_dir: Path, name: str, experiment_id: str, parent_run_id: str) -> None:
    """One MLflow run per unit (params, the RL metric history by iteration, eval metrics); once."""
    import mlflow

    from components.infra.tracking import metric_key

    folder = out_dir / name
    marker = folder / "mlflow_run_id"
    if marker.exists():
        return
    result = json.loads((folder / "result.json").read_text())
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=True,
                          tags={"mlflow.parentRunId": parent_run_id, "pipo.stage": "compare",
                                "compare.unit": name, "seed": str(result["seed"]), "commit": result["commit"]}) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in result["params"].items()})
        history = folder / "history.json"
        if history.exists():
            for step, metrics in enumerate(json.loads(history.read_text())):
                mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items() if v == v}, step=step)
        final = {f"eval/{bench}/{k}": v for bench, summary in result["eval"].items() for k, v in summary.items()}
        final.update({k: v for k, v in result.get("summary", {}).items() if v == v})
        final["train/seconds"] = result["seconds"]
        mlflow.log_metrics({metric_key(k): float(v) for k, v in final.items()})
        for parquet in folder.glob("eval_*.parquet"):
            mlflow.log_artifact(str(parquet), "eval")
    marker.write_text(run.info.run_id)
