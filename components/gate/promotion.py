"""The promotion gate at the pipeline's level: the RL model is promoted only when a paired
test on per-problem results says it beats the model it started from (the SFT model, or with
sft.enabled=false the base model, "start model" in the report and tags) and, when there is one, the
registry's current champion (re-evaluated on the same problems and seed).

Before anything is compared, the evaluation results must belong to the current models: the content
hashes `evaluate` recorded in reports/eval/provenance.json (start, SFT and RL model folders, each benchmark's
data) are recomputed, and a mismatch stops the stage (ProvenanceError) before the registry is touched.

Every distinct RL model (by the sha256 of its folder, tag `model_hash`) is registered once with its
provenance and `promotion: pending`; a rerun on the same weights reuses that version. The alias moves
only on a pass, and then the tag becomes `promoted to @alias`, otherwise `not promoted (reason)`; so a
crash between registering and moving the alias leaves a pending version that the next run completes.
The look-up, registration and alias move run under the registry lock (registry.versions.registration_lock),
so two verifies at once register one version; should the champion move meanwhile, a pass is refused.
Outputs (report, the whole verdict in verify.out_dir/verdict.json, the metrics file with the numbers
compared across runs) are written atomically after the registry calls succeed.
The registered model's description says what it is and how versions are made and gated; each version's
description is its verdict report, the same text as reports/verify/report.md (components/gate/descriptions.py).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from components.config import Config
from components.infra.atomic_io import atomic_dir, atomic_write_json
from components.infra.tracking import PARENT_ENV, metric_key, stage_run
from components.gate.descriptions import champion_note, fit_description, model_description, version_description
from components.gate.statistics import Comparison, compare, markdown_report

log = logging.getLogger(__name__)


def per_problem_scores(table: pd.DataFrame, score: str) -> np.ndarray:
    """greedy: 0/1 correctness of the greedy answer; mean_at_k: share of the k samples correct."""
    if score == "greedy":
        return table["greedy_correct"].astype(float).to_numpy()
    return np.array([float(np.mean(list(v))) for v in table["sample_correct"]])


def pooled_scores(tables: dict[str, pd.DataFrame], score: str) -> tuple[list[str], np.ndarray]:
    """Scores over every benchmark's problems, keyed benchmark/id, in a fixed order."""
    keys, parts = [], []
    for bench in sorted(tables):
        t = tables[bench]
        keys.extend(f"{bench}/{i}" for i in t["id"].astype(str))
        parts.append(per_problem_scores(t, score))
    return keys, np.concatenate(parts)


def read_eval_tables(eval_dir: Path, label: str, benchmarks: list[str]) -> dict[str, pd.DataFrame]:
    tables = {}
    for bench in benchmarks:
        path = eval_dir / label / f"{bench}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"per-problem results not found: {path} (run the evaluate stage first)")
        tables[bench] = pd.read_parquet(path)
    return tables


def _aligned(name: str, keys_a: list[str], keys_b: list[str]) -> None:
    if keys_a != keys_b:
        raise ValueError(f"{name}: the two models were not evaluated on the same problems")


@dataclass(frozen=True)
class Matchup:
    """One comparison the promotion gate makes: `model` ("rl") against `baseline` ("sft", "start model" when
    SFT was skipped, or "champion", with the champion's registry `version`)."""

    model: str
    baseline: str
    version: str | None = None

    @property
    def label(self) -> str:
        """The report's row name: "rl vs sft", "rl vs champion v3"."""
        return f"{self.model} vs {self.baseline}" + (f" v{self.version}" if self.version is not None else "")

    @property
    def key(self) -> str:
        """The verdict's and the MLflow metrics' key: "rl_vs_sft", "rl_vs_start_model", "rl_vs_champion". No
        version, so the comparisons with successive champions chart as one series."""
        return f"{self.model}_vs_{self.baseline.replace(' ', '_')}"


METRIC_FIELDS = ("diff", "ci_low", "ci_high", "p_value", "passed")  # of each comparison, logged to MLflow


def comparison_entry(c: Comparison) -> dict:
    """One comparison's numbers in the verdict (verdict.json; metrics/verify.json keeps COMPARED_FIELDS)."""
    return {"diff": c.paired.diff, "ci_low": c.paired.ci_low, "ci_high": c.paired.ci_high,
            "p_value": c.paired.p_value, "passed": c.verdict.passed,
            "mcnemar_p": c.mcnemar.p_value if c.mcnemar is not None else None}


def gate_metrics(results: list[tuple[Matchup, Comparison]], promoted: bool) -> dict[str, float]:
    """The verify run's MLflow metrics: verify/<matchup key>/<field> per comparison and verify/promoted.
    The names are a public interface (docs/metrics.md): users chart them across runs."""
    metrics = {metric_key(f"verify/{m.key}/{f}"): float(comparison_entry(c)[f])
               for m, c in results for f in METRIC_FIELDS}
    return {**metrics, "verify/promoted": float(promoted)}


PENDING = "pending"
VERDICT_FILE = "verdict.json"  # in verify.out_dir: the whole summary the stage returns
COMPARED_TOP = ("promoted", "registered_version")  # of the summary, what metrics/verify.json keeps
COMPARED_FIELDS = ("diff", "ci_low", "ci_high", "mcnemar_p", "passed")  # of each comparison
PROBLEM_COLUMNS = ("id", "data_source", "prompt", "answer")  # an eval table's copy of the benchmark's rows


def _start_tags(model_hashes: dict[str, str]) -> dict[str, str]:
    """Which model RL started from and its hash: the SFT model, or the base model itself."""
    if "untrained" in model_hashes:
        return {"start_model": "base model (sft.enabled=false)", "start_model_hash": model_hashes["untrained"]}
    return {"start_model": "sft", "sft_model_hash": model_hashes["sft"]}


def provenance_tags(cfg: Config, verdict: str, reason: str, model_hashes: dict[str, str] | None = None
                    ) -> dict[str, str]:
    from components.registry.versions import MODEL_HASH_TAG, data_version, git_commit

    p = cfg.rl.pipo
    return {
        "algorithm": cfg.rl.algorithm,
        "pipo.enabled": str(p.enabled).lower(),
        "pipo.window": str(p.window),
        "pipo.neg_scale": str(p.neg_scale),
        "pipo.pi_clip_mode": p.pi_clip_mode,
        "rollout.engine": cfg.rollout.engine,
        "seed": str(cfg.seed),
        "data_version": data_version(),
        "git_commit": git_commit(),
        "parent_run_id": os.environ.get(PARENT_ENV, "none"),
        "verdict": verdict,
        "verdict_reason": reason,
        **({MODEL_HASH_TAG: model_hashes["rl"], **_start_tags(model_hashes)} if model_hashes else {}),
    }


class _Scored(NamedTuple):
    """What the gate compares: the RL model's pooled scores and the start model's, on the same problems."""

    hashes: dict[str, str]  # model label -> content hash, as recomputed by check_eval_provenance
    against: Matchup  # rl vs sft, or rl vs start model when SFT was skipped
    baseline: np.ndarray
    rl: np.ndarray
    rl_keys: list[str]  # benchmark/id of each score, in order
    rl_tables: dict[str, pd.DataFrame]


def verify_and_promote(cfg: Config) -> dict:
    """The verify stage: check the eval results belong to the current models, compare RL with its start model
    (and the champion), register the RL model once, move the alias on a pass, then write the report, the
    verdict and the metrics file. Returns the verdict summary (what verify.out_dir/VERDICT_FILE holds)."""
    import mlflow

    from components.infra.run_records import log_benchmark_inputs

    v, reg = cfg.verify, cfg.registry
    scored = _scored_models(cfg)
    with stage_run(cfg, "verify") as run:
        # The benchmark files (checked above to be those evaluated) with the rows that were scored.
        log_benchmark_inputs(cfg, {b: t[[c for c in PROBLEM_COLUMNS if c in t]] for b, t in scored.rl_tables.items()})
        results, holder, against_champion = _comparisons(cfg, scored)
        comparisons = [c for _, c in results]
        passed = all(c.verdict.passed for c in comparisons)
        failed = [c for c in comparisons if not c.verdict.passed]
        reason = "; ".join(f"{c.name}: {c.verdict.reason}" for c in (failed or comparisons))
        report = markdown_report(comparisons, title=f"Promotion gate ({v.score} score, {len(scored.rl)} problems)")

        summary: dict = {"promoted": passed, "score": v.score, "num_problems": int(len(scored.rl)),
                         "model_hash": scored.hashes["rl"]}
        summary.update({m.key: comparison_entry(c) for m, c in results})
        mlflow.log_metrics(gate_metrics(results, passed))

        with atomic_dir(v.out_dir) as tmp:
            (tmp / "report.md").write_text(report)
            version, existing, promotion = _register_and_promote(cfg, scored.hashes, passed, reason, holder)
            summary["registered_version"] = int(version.version)
            summary["reused_version"] = existing is not None
            (tmp / VERDICT_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
            again = " (these weights were registered before: no new version)" if existing is not None else ""
            _describe(cfg, tmp / "report.md", run, f"{reg.model_name} v{version.version}{again}: {promotion}",
                      report, provenance_tags(cfg, "passed" if passed else "failed", reason, scored.hashes),
                      against_champion, version.version)
        # Inside the run: a write that fails after the alias moved must end the run FAILED, as the stage does.
        atomic_write_json(v.metrics_file, compared_verdict(summary))
        mlflow.set_tags({"verify.verdict": "passed" if passed else "failed",
                         "verify.registered_version": str(version.version), "verify.model_hash": scored.hashes["rl"]})
    log.info("verify: %s; %s v%s", "PROMOTED" if passed else "not promoted", reg.model_name, version.version)
    return summary


def _scored_models(cfg: Config) -> _Scored:
    """Recompute the hashes of the models and data evaluate scored (a mismatch raises ProvenanceError: scores of
    other weights or other data must never decide about these weights), then read the start model's and the RL
    model's per-problem scores, refusing two different problem sets."""
    from components.infra.provenance import check_eval_provenance
    from components.stages.common import model_dir, start_label

    names = [b.name for b in cfg.eval.benchmarks]
    eval_dir = Path(cfg.eval.out_dir)
    # RL is compared with the model it started from: "sft", or "untrained" when SFT was skipped.
    start = start_label(cfg)
    against = Matchup("rl", "sft" if start == "sft" else "start model")
    hashes = check_eval_provenance(eval_dir, {m: model_dir(m, cfg) for m in dict.fromkeys((start, "sft", "rl"))},
                                   cfg.eval.benchmarks, cfg.data.out_dir)
    start_keys, baseline = pooled_scores(read_eval_tables(eval_dir, start, names), cfg.verify.score)
    rl_tables = read_eval_tables(eval_dir, "rl", names)
    rl_keys, rl = pooled_scores(rl_tables, cfg.verify.score)
    _aligned(against.label, start_keys, rl_keys)
    return _Scored(hashes, against, baseline, rl, rl_keys, rl_tables)


def _comparisons(cfg: Config, scored: _Scored) -> tuple[list[tuple[Matchup, Comparison]], Any, str]:
    """RL against its start model and, when verify.against_champion and the alias is on other weights,
    against the champion re-evaluated. Returns the results, the alias holder (or None) and the report's
    note on the champion."""
    from components.registry.versions import current_champion, find_version

    v, reg = cfg.verify, cfg.registry

    def gate(matchup: Matchup, baseline: np.ndarray) -> tuple[Matchup, Comparison]:
        return matchup, compare(matchup.label, baseline, scored.rl, min_gain=v.min_gain, confidence=v.confidence,
                                num_resamples=v.num_resamples, seed=cfg.seed)

    results = [gate(scored.against, scored.baseline)]
    existing = find_version(reg.model_name, scored.hashes["rl"], reg.alias)
    holder = current_champion(reg.model_name, reg.alias)
    champion = holder if v.against_champion else None
    if champion is not None and existing is not None and str(champion.version) == str(existing.version):
        log.info("verify: @%s is already this model (v%s); no comparison against itself", reg.alias,
                 champion.version)
        champion = None
    elif champion is not None:
        results.append(gate(Matchup("rl", "champion", str(champion.version)),
                            _champion_scores(cfg, champion, scored.rl_keys)))
    return results, holder, champion_note(reg.alias, v.against_champion, holder, champion)


def _register_and_promote(cfg: Config, hashes: dict[str, str], passed: bool, reason: str, holder):
    """Under the registry lock: register the RL weights once (or reuse their version), move the alias on a
    pass, and tag the version with the outcome. Returns (version, the earlier version or None, promotion)."""
    from components.registry.versions import (current_champion, find_version, log_policy, register,
                                              registration_lock, set_alias, tag_version)

    reg = cfg.registry
    verdict = "passed" if passed else "failed"
    # Two verifies of the same weights (two checkouts sharing a store, two out_dirs) must not both
    # find no version and both register one: the look-up is repeated under the registry lock.
    with registration_lock(reg.model_name):
        existing = find_version(reg.model_name, hashes["rl"], reg.alias)
        now = current_champion(reg.model_name, reg.alias)
        if passed and cfg.verify.against_champion and _version(now) != _version(holder) and \
                _version(now) != _version(existing):
            raise RuntimeError(f"@{reg.alias} of {reg.model_name} moved from v{_version(holder)} to "
                               f"v{_version(now)} while verify ran; rerun verify to compare against it")
        holder = now
        if existing is None:
            info = log_policy(cfg.rl.out_dir, cfg.eval.max_completion_length, chat_template=cfg.data.chat_template)
            version = register(info.model_uri, reg.model_name,
                               {**provenance_tags(cfg, verdict, reason, hashes), "promotion": PENDING})
        else:  # the same weights were registered before (a rerun, or a crash before the alias moved)
            version = existing
            log.info("verify: %s v%s already holds this model (sha256 %s); reusing it", reg.model_name,
                     version.version, hashes["rl"])
            tag_version(reg.model_name, version.version,
                        {"verdict": verdict, "verdict_reason": reason, "promotion": PENDING})
        if passed:
            set_alias(reg.model_name, reg.alias, version.version)
            promotion = f"promoted to @{reg.alias}"
        else:
            if holder is not None and str(holder.version) == str(version.version):
                held = f"@{reg.alias} left on this version from an earlier pass"
            elif holder is not None:
                held = f"@{reg.alias} stays on v{holder.version}"
            else:
                held = f"no @{reg.alias} set"
            promotion = f"not promoted ({held})"
        tag_version(reg.model_name, version.version, {"promotion": promotion})
    return version, existing, promotion


def _describe(cfg: Config, report_path: Path, run, outcome: str, gate_table: str, tags: dict[str, str],
              against_champion: str, version: str) -> None:
    """Write the full verdict report to report_path, log it as the run's artifact, and make it the version's
    description (so the UI shows why from the model's page); the registered model's says how versions are made."""
    import mlflow

    from components.infra.provenance import read_eval_manifest
    from components.registry.versions import describe

    reg = cfg.registry
    full = version_description(
        outcome=outcome, gate_table=gate_table, tags=tags, champion=against_champion, benchmarks=read_eval_manifest(Path(cfg.eval.out_dir))["benchmarks"],
        run_id=run.info.run_id if run else "none")
    report_path.write_text(full)
    mlflow.log_artifact(str(report_path), "verify")
    describe(reg.model_name, model_description(cfg))
    describe(reg.model_name, fit_description(full, f"artifact verify/report.md of run {run.info.run_id}"
                                             if run else "reports/verify/report.md"), version)


def compared_verdict(summary: dict) -> dict:
    """The verdict's numbers a user compares across runs (the DVC metrics file, each a `dvc exp show`
    column): promoted, registered_version and each comparison's gain, interval, McNemar p and outcome.
    The whole summary (score kind, problem count, model hash, bootstrap p) is reports/verify/VERDICT_FILE."""
    kept = {k: summary[k] for k in COMPARED_TOP if k in summary}
    kept.update({name: {m: c[m] for m in COMPARED_FIELDS if m in c}
                 for name, c in summary.items() if isinstance(c, dict) and "diff" in c})
    return kept


def _version(model_version) -> str | None:
    return None if model_version is None else str(model_version.version)


def _champion_scores(cfg: Config, champion, rl_keys: list[str]) -> np.ndarray:
    """Re-evaluate the champion on the current benchmarks with the same seed and settings."""
    from components.registry.versions import download_policy
    from components.eval.run import evaluate_folder, load_benchmarks
    from components.reward.pool import pool_for

    with tempfile.TemporaryDirectory() as tmp, pool_for(cfg.reward) as scorer:
        folder = download_policy(cfg.registry.model_name, champion.version, Path(tmp))
        results = evaluate_folder(str(folder), cfg, load_benchmarks(cfg), f"champion-v{champion.version}", scorer)
        keys, scores = pooled_scores({b: table for b, (_, table) in results.items()}, cfg.verify.score)
    _aligned("rl vs champion", keys, rl_keys)
    return scores
