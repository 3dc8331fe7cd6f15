"""Compare RL variants against SFT and a matched-wall-time continued-SFT control, over seeds.

For every seed: SFT from scratch, then each RL variant from that SFT checkpoint, then the control
(continued SFT from the same checkpoint for the median wall time of the RL variants); every model
is evaluated on the same unseen eval prompts. Results go to MLflow (one run per seed x variant,
nested under one parent run, with RL reward curves) and to reports/compare/ (summary.md,
results.json). `make compare` runs it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import Config, ConfigError, load_config
from components.infra.atomic_io import atomic_write_json, atomic_write_text
from components.infra.runtime import configure_threads, limit_heap_growth, quiet_environment

log = logging.getLogger(__name__)


def _split(cfg: Config, name: str) -> pd.DataFrame:
    path = Path(cfg.data.out_dir) / f"{name}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"prepared split not found: {path} (run `dvc repro prepare` first)")
    return pd.read_parquet(path)


def _mean_std(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.3f}" if xs else "n/a"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def summarize(rows: list[dict], k: int) -> str:
    """Markdown table: per model kind, pass@1 and mean@k as mean ± std over seeds."""
    kinds = list(dict.fromkeys(r["model"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"Seeds: {seeds}. Eval: greedy pass@1 and mean@{k} on unseen prompts (mean ± std over seeds).", "",
             f"| model | pass@1 | mean@{k} | gain over SFT (pass@1) | train seconds |", "|---|---|---|---|---|"]
    sft = {r["seed"]: r["pass@1"] for r in rows if r["model"] == "sft"}
    for kind in kinds:
        sel = [r for r in rows if r["model"] == kind]
        gains = [r["pass@1"] - sft[r["seed"]] for r in sel if r["seed"] in sft]
        secs = [r["seconds"] for r in sel if r.get("seconds") is not None]
        lines.append(f"| {kind} | {_mean_std([r['pass@1'] for r in sel])} | {_mean_std([r[f'mean@{k}'] for r in sel])} "
                     f"| {_mean_std(gains) if kind != 'sft' else '-'} | {_mean_std(secs) if secs else '-'} |")
    return "\n".join(lines) + "\n"


def run_compare(cfg: Config, params_path: Path | None, seeds: list[int], variants: dict[str, list[str]],
                control: bool, out_dir: Path) -> list[dict]:
    import mlflow
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from components.compare.plots import compare_figures
    from components.eval.run import evaluate_folder, load_benchmarks
    from components.infra.tracking import ensure_experiment, log_metrics, metric_key
    from components.model.chat import rendered_frame
    from components.model.factory import initial_policy, load_policy, training_memory
    from components.model.io import save_policy
    from components.reward.pool import pool_for
    from components.rl.trainer import train_rl
    from components.sft.control import continue_sft_for
    from components.sft.train import train_sft

    sft_data, rl_data = (_split(cfg, s) for s in ("sft", "rl"))
    benchmarks = load_benchmarks(cfg)
    variant_cfgs = {name: load_config(params_path, overrides) for name, overrides in variants.items()}
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.model.mixed_precision)
    experiment_id = ensure_experiment(cfg)
    rows: list[dict] = []
    tables: dict[tuple[str, int, str], pd.DataFrame] = {}  # (model kind, seed, benchmark) -> per-problem
    histories: dict[str, dict[int, list[dict]]] = {}
    k = cfg.eval.num_samples

    def evaluate(model, tokenizer, seed, kind, seconds, run_tags):
        # The pipeline's own evaluation (engine from `rollout`, the scoring pool, the same metrics),
        # on the model as saved, so compare and the evaluate stage cannot drift apart.
        folder = Path(scratch) / f"{kind}-{seed}-eval"
        save_policy(model, tokenizer, folder)
        results = evaluate_folder(str(folder), cfg.model_copy(update={"seed": seed}), benchmarks, f"{kind}/s{seed}",
                                  scorer)
        for bench, (summary, table) in results.items():
            rows.append({"seed": seed, "model": kind, "benchmark": bench, "seconds": seconds, **summary})
            tables[(kind, seed, bench)] = table
            mlflow.log_metrics({metric_key(f"eval/{bench}/{key}"): float(v) for key, v in summary.items()})
        mlflow.set_tags(run_tags)

    with mlflow.start_run(experiment_id=experiment_id, run_name="compare", tags={"pipo.stage": "compare"}) as parent, \
            tempfile.TemporaryDirectory() as scratch, pool_for(cfg.reward) as scorer:
        mlflow.log_params({"seeds": ",".join(map(str, seeds)), "variants": ",".join(variants), "control": control})
        for seed in seeds:
            set_seed(seed)
            sft_dir = Path(scratch) / f"sft-{seed}"
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"sft/s{seed}", nested=True):
                model, tokenizer = initial_policy(cfg.model, seed)
                model = training_memory(model, cfg.model)
                model, res = train_sft(model, tokenizer, sft_data, cfg.sft, cfg.model.lora, seed, accelerator,
                                       chat_template=cfg.data.chat_template,
                                       chunk_tokens=cfg.model.lm_head_chunk_tokens, log_metrics=log_metrics)
                save_policy(model, tokenizer, sft_dir)
                evaluate(model, tokenizer, seed, "sft", res.seconds, {"seed": str(seed), "variant": "sft"})
            rl_seconds = []
            for name, vcfg in variant_cfgs.items():
                set_seed(seed)
                with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}/s{seed}", nested=True):
                    mlflow.log_params(vcfg.flat())
                    model, tokenizer = load_policy(sft_dir, cfg.model.dtype)
                    model = training_memory(model, vcfg.model)
                    # rendered as the SFT model was trained and as every model is evaluated (cfg's mode)
                    prompts = rendered_frame(tokenizer, rl_data, cfg.data.chat_template)
                    model, res = train_rl(model, tokenizer, prompts, vcfg.rl, seed, accelerator,
                                          log_metrics=log_metrics, rollout=vcfg.rollout, reward=vcfg.reward,
                                          model_cfg=vcfg.model, model_path=sft_dir)
                    rl_seconds.append(res.seconds)
                    histories.setdefault(name, {})[seed] = res.history
                    evaluate(model, tokenizer, seed, name, res.seconds, {"seed": str(seed), "variant": name})
            if control and rl_seconds:
                budget = statistics.median(rl_seconds)
                set_seed(seed)
                with mlflow.start_run(experiment_id=experiment_id, run_name=f"control/s{seed}", nested=True):
                    model, tokenizer = load_policy(sft_dir, cfg.model.dtype)
                    model = training_memory(model, cfg.model)
                    model, steps = continue_sft_for(model, tokenizer, sft_data, cfg.sft, budget, seed,
                                                    cfg.compare.control_lr, accelerator,
                                                    chat_template=cfg.data.chat_template,
                                                    chunk_tokens=cfg.model.lm_head_chunk_tokens)
                    mlflow.log_metric("control/steps", steps)
                    evaluate(model, tokenizer, seed, "continued_sft", budget,
                             {"seed": str(seed), "variant": "continued_sft"})
        report = "\n".join(f"### {bench}\n\n" + summarize([r for r in rows if r["benchmark"] == bench], k)
                           for bench in benchmarks)
        report += "\n" + paired_tests(tables, list(variants), cfg) + "\n"
        out_dir.mkdir(parents=True, exist_ok=True)
        figures = compare_figures([r for r in rows if r["benchmark"] == next(iter(benchmarks))], histories, out_dir)
        report += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n"
        atomic_write_text(out_dir / "summary.md", report)
        atomic_write_json(out_dir / "results.json", rows)
        atomic_write_json(out_dir / "histories.json", histories)
        mlflow.log_artifacts(str(out_dir), "compare")
        log.info("compare run %s\n%s", parent.info.run_id, report)
    return rows


def paired_tests(tables: dict[tuple[str, int, str], pd.DataFrame], variants: list[str], cfg: Config) -> str:
    """Paired bootstrap + McNemar on greedy correctness, pooling (seed, benchmark, problem) units:
    each RL variant against SFT, and every later variant against the first (e.g. PIPO vs GRPO)."""
    from components.gate.statistics import compare, markdown_report

    def pooled(kind: str):
        keys = sorted((s, b) for (m, s, b) in tables if m == kind)
        return np.concatenate([tables[(kind, s, b)]["greedy_correct"].astype(float).to_numpy() for s, b in keys])

    kinds = {m for (m, _, _) in tables}
    pairs = [("sft", v) for v in variants if v in kinds and "sft" in kinds]
    pairs += [(variants[0], v) for v in variants[1:] if v in kinds and variants[0] in kinds]
    comparisons = [compare(f"{b} vs {a}", pooled(a), pooled(b), min_gain=cfg.verify.min_gain,
                           confidence=cfg.verify.confidence, num_resamples=cfg.verify.num_resamples, seed=0)
                   for a, b in pairs]
    if not comparisons:
        return ""
    return markdown_report(comparisons, title="Paired tests (greedy correctness, problems x seeds pooled)")


def main(argv: list[str] | None = None) -> int:
    quiet_environment()
    configure_threads()
    limit_heap_growth()
    parser = argparse.ArgumentParser(prog="python -m components.compare.run", description=__doc__)
    parser.add_argument("--params", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    try:
        cfg = load_config(args.params, args.overrides)
        variants = {name: list(args.overrides) + list(ov) for name, ov in cfg.compare.variants.items()}
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.time()
    run_compare(cfg, args.params, list(cfg.compare.seeds), variants, cfg.compare.control, Path(cfg.compare.out_dir))
    log.info("compare finished in %.0fs", time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
