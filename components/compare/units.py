"""One unit of the comparison sweep, run in a process of its own: the SFT warm start of a seed, one RL run
(regime x variant x seed) from it, or the matched-time continued-SFT control. Each writes its folder
whole or not at all (`<folder>.partial` renamed at the end), so an interrupted sweep redoes only the
units whose folder is missing. No MLflow here: the sweep's coordinator logs each finished unit.

    python -m components.compare.units SPEC.json     (the sweep writes SPEC; see components/compare/sweep.py)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class UnitSpec:
    kind: str  # sft | rl | control
    name: str  # folder name under the sweep's out_dir, e.g. runs/default/pipo/s0
    seed: int
    overrides: list[str] = field(default_factory=list)
    params: str | None = None
    sft_dir: str | None = None  # rl, control: the seed's SFT model
    budget_from: list[str] = field(default_factory=list)  # control: the RL units whose median seconds it gets
    control_lr: float = 0.0
    presets: list[str] | None = None  # the sweep's --preset files (None: $PIPO_PRESET, as load_config reads it)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def git_commit() -> str:
    """The code a unit ran: HEAD, marked dirty when the tree has changes ("unknown" outside a repository)."""
    import subprocess

    here = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{'-dirty' if dirty else ''}" if head else "unknown"


def _split(cfg, name: str) -> pd.DataFrame:
    path = Path(cfg.data.out_dir) / f"{name}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"prepared split not found: {path} (run `dvc repro prepare` first)")
    return pd.read_parquet(path)


def _evaluate(model, tokenizer, cfg, seed: int, label: str, out: Path) -> dict:
    """The pipeline's own evaluation on every benchmark; per-problem tables saved beside the result."""
    from components.eval.run import evaluate_folder, load_benchmarks
    from components.model.io import save_policy
    from components.reward.pool import pool_for

    with tempfile.TemporaryDirectory() as scratch, pool_for(cfg.reward) as scorer:
        save_policy(model, tokenizer, Path(scratch))
        results = evaluate_folder(scratch, cfg.model_copy(update={"seed": seed}), load_benchmarks(cfg), label, scorer)
    summaries = {}
    for bench, (summary, table) in results.items():
        table.to_parquet(out / f"eval_{bench}.parquet")
        summaries[bench] = {k: float(v) for k, v in summary.items()}
    return summaries


def run_unit(spec: UnitSpec, out_dir: Path) -> Path:
    """Do the unit's work into out_dir/<name>; returns the folder (already complete: nothing to do).

    Trains (the kind's function in _TRAIN), evaluates, and renames `<name>.partial` to `<name>` last."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from components.config import load_config

    final = out_dir / spec.name
    if (final / "result.json").exists():
        return final
    if spec.kind not in _TRAIN:
        raise ValueError(f"unknown unit kind {spec.kind!r}")
    work = final.with_name(final.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = load_config(spec.params, spec.overrides, spec.presets)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.model.mixed_precision)
    set_seed(spec.seed)
    result: dict = {"kind": spec.kind, "name": spec.name, "seed": spec.seed, "overrides": spec.overrides,
                    "commit": git_commit(), "params": cfg.flat()}
    started = time.time()
    model, tokenizer = _TRAIN[spec.kind](spec, cfg, accelerator, out_dir, work, result)
    result["wall_seconds"] = time.time() - started
    result["eval"] = _evaluate(model, tokenizer, cfg, spec.seed, spec.name, work)
    (work / "result.json").write_text(json.dumps(result, default=str))
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)  # the unit is done exactly when its folder exists
    return final


# Each kind's training: (spec, cfg, accelerator, out_dir, work, result) -> (model, tokenizer), adding what it
# measured to `result` and any file it keeps to `work`.

def _train_sft(spec: UnitSpec, cfg, accelerator, out_dir: Path, work: Path, result: dict):
    """The seed's SFT warm start from the initial policy, saved for the seed's RL units and control."""
    from components.model.factory import initial_policy, training_memory
    from components.model.io import save_policy
    from components.sft.train import train_sft

    model, tokenizer = initial_policy(cfg.model, spec.seed)
    model = training_memory(model, cfg.model)
    model, res = train_sft(model, tokenizer, _split(cfg, "sft"), cfg.sft, cfg.model.lora, spec.seed, accelerator,
                           chat_template=cfg.data.chat_template, chunk_tokens=cfg.model.lm_head_chunk_tokens)
    save_policy(model, tokenizer, work / "model")
    result["seconds"] = res.seconds
    return model, tokenizer


def _train_rl(spec: UnitSpec, cfg, accelerator, out_dir: Path, work: Path, result: dict):
    """One RL run from the seed's SFT model; its per-iteration metrics go to history.json."""
    from components.model.chat import rendered_frame
    from components.model.factory import load_policy, training_memory
    from components.rl.trainer import train_rl

    model, tokenizer = load_policy(spec.sft_dir, cfg.model.dtype, cfg.model.trust_remote_code)
    model = training_memory(model, cfg.model)
    prompts = rendered_frame(tokenizer, _split(cfg, "rl"), cfg.data.chat_template)
    # The guard keeps its best verified checkpoint on disk (and so, like the rl stage, writes the periodic
    # ones too: milliseconds on the tiny default); unguarded runs write none. Removed once the run ends.
    checkpoints = work / "checkpoints" if cfg.rl.guard.enabled else None
    model, res = train_rl(model, tokenizer, prompts, cfg.rl, spec.seed, accelerator, rollout=cfg.rollout,
                          reward=cfg.reward, model_cfg=cfg.model, model_path=spec.sft_dir, checkpoint_dir=checkpoints)
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    result.update({"seconds": res.seconds, "iterations": res.iterations, "summary": res.summary,
                   "guard": res.guard})
    (work / "history.json").write_text(json.dumps(res.history))
    return model, tokenizer


def _train_control(spec: UnitSpec, cfg, accelerator, out_dir: Path, work: Path, result: dict):
    """More SFT from the seed's SFT model for the median seconds of the RL units in spec.budget_from."""
    import statistics

    from components.model.factory import load_policy, training_memory
    from components.sft.control import continue_sft_for

    seconds = [json.loads((out_dir / n / "result.json").read_text())["seconds"] for n in spec.budget_from]
    budget = statistics.median(seconds)
    model, tokenizer = load_policy(spec.sft_dir, cfg.model.dtype, cfg.model.trust_remote_code)
    model = training_memory(model, cfg.model)
    model, steps = continue_sft_for(model, tokenizer, _split(cfg, "sft"), cfg.sft, budget, spec.seed,
                                    spec.control_lr, accelerator, chat_template=cfg.data.chat_template,
                                    chunk_tokens=cfg.model.lm_head_chunk_tokens)
    result.update({"seconds": budget, "steps": steps})
    return model, tokenizer


_TRAIN = {"sft": _train_sft, "rl": _train_rl, "control": _train_control}


def main(argv: list[str] | None = None) -> int:
    import logging

    from components.infra.runtime import configure_threads, limit_heap_growth, quiet_environment

    quiet_environment()
    configure_threads()
    limit_heap_growth()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m components.compare.units SPEC.json OUT_DIR", file=sys.stderr)
        return 2
    spec = UnitSpec(**json.loads(Path(args[0]).read_text()))
    run_unit(spec, Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
