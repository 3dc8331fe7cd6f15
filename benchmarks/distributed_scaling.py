"""Peak memory and per-iteration time of the RL stage with 1 and 2 processes (same global batch).

Runs the real stage (`python -m components.cli rl`, under `accelerate launch` with
configs/accelerate/ddp.yaml for 2 processes: gloo on CPU) on the current data/prepared and
models/sft, each in its own MLflow store and checkpoint folder, one after the other. Peak memory
is the largest resident set of any process of the run, sampled every 0.1 s with psutil;
per-iteration time is the median of `perf/iter_seconds` after the first 3 iterations.

  python benchmarks/distributed_scaling.py [--iterations 30] [--json reports/bench/distributed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_case(name: str, processes: int, threads: int, iterations: int, scratch: Path) -> dict:
    store = scratch / name
    overrides = [f"rl.iterations={iterations}", f"rl.out_dir={store / 'rl'}", f"rl.checkpoint_dir={store / 'ckpt'}",
                 f"rl.checkpoint_every={iterations}", "rl.log_every=1000"]
    stage = ["-m", "components.cli", "rl"] + [a for o in overrides for a in ("--set", o)]
    if processes == 1:
        cmd = [sys.executable] + stage
    else:
        cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "configs/accelerate/ddp.yaml"),
               "--num_processes", str(processes), "--mixed_precision", "no", "--main_process_port", "29611"] + stage
    env = dict(os.environ, PIPO_TORCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}")
    store.mkdir(parents=True)
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, parent = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [parent] + parent.children(recursive=True)
            peak = max([peak] + [p.memory_info().rss for p in tree if p.is_running()])
        except psutil.Error:
            pass
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{err[-3000:]}")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    [run] = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
             if r.data.tags.get("pipo.stage") == "rl"]
    its = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "perf/iter_seconds"), key=lambda m: m.step)]
    return {"case": name, "processes": processes, "threads_per_process": threads,
            "median_iter_seconds": statistics.median(its[3:]), "peak_rss_mb": peak / 2**20,
            "wall_seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cases = [("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_case(name.replace(" ", "_"), n, t, args.iterations, Path(tmp)) for name, n, t in cases]
    for r in results:
        print(f"{r['case']:<26} {r['median_iter_seconds']:.3f} s/iter   peak RSS {r['peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
