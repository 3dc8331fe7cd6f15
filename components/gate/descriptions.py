"""The registry's own words on the promotion gate: the registered model's description (what it is, how
its versions are made and gated) and each version's description, its verdict report (gains with
intervals, McNemar p, against which baseline and champion, data and code versions). In the MLflow UI
"why was this promoted" is then one click from the model; the tags keep the same facts for search."""

from __future__ import annotations

from typing import Mapping

from components.config import Config

DESCRIPTION_LIMIT = 5000  # characters MLflow keeps of a registered model's or a version's description


def fit_description(text: str, where: str) -> str:
    """`text` cut to DESCRIPTION_LIMIT characters, ending with where the full text is when cut."""
    if len(text) <= DESCRIPTION_LIMIT:
        return text
    note = f"\n\n... (cut to MLflow's {DESCRIPTION_LIMIT} characters; the full report: {where})"
    return text[: DESCRIPTION_LIMIT - len(note)] + note


def model_description(cfg: Config) -> str:
    """What the registered model is and how its versions are made and gated (the settings of the
    verify that wrote it: each verify rewrites it)."""
    v, reg = cfg.verify, cfg.registry
    champion = " and against the current `@%s` (re-evaluated on the same problems and seed)" % reg.alias \
        if v.against_champion else ""
    return "\n".join([
        "RL-post-trained policy of the PIPO pipeline (RL with verifiable rewards: a base algorithm such as GRPO, "
        "with or without PIPO), as an MLflow pyfunc model: "
        f'`mlflow.pyfunc.load_model("models:/{reg.model_name}@{reg.alias}").predict({{"prompt": [...]}})` '
        "returns each prompt's completion and its extracted answer.",
        "",
        "**How versions are made.** The `verify` stage registers every distinct RL model once, keyed by the "
        "sha256 of its folder (tag `model_hash`; a rerun on the same weights reuses its version), with its "
        "provenance as tags: algorithm, PIPO settings, seed, `data_version` (DVC), `git_commit`, start model.",
        "",
        f"**How they are gated.** `@{reg.alias}` moves to a version only when a paired bootstrap over the "
        f"benchmark problems ({v.score} score, {v.num_resamples} resamples) puts the lower end of the "
        f"{100 * v.confidence:g}% CI of the gain above verify.min_gain ({v.min_gain:+.3f}), against the model "
        f"RL started from{champion}. For 0/1 scores McNemar's exact test is reported beside it.",
        "",
        "**Each version's description is its verdict report**; tags `verdict`, `verdict_reason` and "
        "`promotion` say the same in short.",
    ])


def champion_note(alias: str, against_champion: bool, holder, compared) -> str:
    """Which champion a verdict was reached against. holder: the version holding the alias when verify
    started (None: none); compared: the one RL was compared with (None: not compared)."""
    if compared is not None:
        return f"v{compared.version} (`@{alias}`, re-evaluated on the same problems and seed)"
    if not against_champion:
        return "not compared (verify.against_champion is false)"
    if holder is None:
        return f"none (no `@{alias}` yet)"
    return f"v{holder.version} holds `@{alias}` and is this model: not compared with itself"


def version_description(*, outcome: str, gate_table: str, tags: Mapping[str, str], champion: str,
                        benchmarks: Mapping[str, Mapping], run_id: str) -> str:
    """The verdict report of one registered version (markdown). outcome: what happened to the alias;
    gate_table: statistics.markdown_report of the comparisons; tags: the version's provenance tags
    (promotion.provenance_tags); benchmarks: the eval manifest's {name: {path, sha256, limit}}."""
    pipo = (f"PIPO on (window {tags['pipo.window']}, neg_scale {tags['pipo.neg_scale']}, "
            f"pi_clip_mode {tags['pipo.pi_clip_mode']})" if tags["pipo.enabled"] == "true" else "PIPO off")
    start_hash = tags.get("sft_model_hash") or tags.get("start_model_hash", "?")
    bench_lines = [f"- {name}: `{b.get('path')}` sha256 `{b.get('sha256')}`"
                   + (f" (first {b['limit']} rows)" if b.get("limit") is not None else "")
                   for name, b in sorted(benchmarks.items())]
    return "\n".join([
        f"**{outcome}**",
        "",
        f"RL policy: {tags['algorithm']}, {pipo}, seed {tags['seed']}, rollout engine {tags['rollout.engine']}; "
        f"folder sha256 `{tags.get('model_hash', '?')}`.",
        "",
        gate_table.rstrip(),
        "",
        f"- **Baseline**: the model RL started from: {tags.get('start_model', '?')} (sha256 `{start_hash}`)",
        f"- **Champion**: {champion}",
        f"- **Data**: `{tags['data_version']}` (DVC, dvc.lock)",
        "- **Benchmarks**:",
        *[f"  {line}" for line in bench_lines],
        f"- **Code**: git `{tags['git_commit']}`",
        f"- **Runs**: verify `{run_id}`, pipeline `{tags['parent_run_id']}`",
        "",
    ])
