"""Stage `prepare`: canonical splits from the configured source, checked by data validation (Great Expectations)."""

from __future__ import annotations

from components.config import Config
from components.infra.locks import locked_stage
from components.stages.common import VALIDATION_DIR


def prompt_budget(cfg: Config):
    """(count_tokens, max_prompt_tokens) for the configured model's tokenizer and context.
    count_tokens(prompt, messages=None) counts the prompt as the model reads it (data.chat_template)."""
    from components.model.chat import load_messages, render_prompt
    from components.model.factory import TINY, load_tokenizer, model_max_length
    from components.model.tokenizer import build_char_tokenizer

    completion = max(cfg.rl.max_completion_length, cfg.eval.max_completion_length)
    if cfg.model.name_or_path == TINY:
        tok, context = build_char_tokenizer(), cfg.model.tiny.max_position_embeddings
    else:
        tok = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
        context = model_max_length(cfg.model.name_or_path, cfg.model.trust_remote_code)

    def count_tokens(prompt: str, messages: str | None = None) -> int:
        text = render_prompt(tok, prompt, load_messages(messages), cfg.data.chat_template)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count_tokens, context - completion


@locked_stage("prepare", lambda cfg: [cfg.data.out_dir, VALIDATION_DIR])
def run(cfg: Config) -> dict:
    import mlflow

    from components.data.prepare import prepare, reset_report
    from components.infra.run_records import log_split_inputs
    from components.infra.tracking import stage_run

    reset_report(VALIDATION_DIR)  # before anything can fail: a failed prepare never shows an old PASSED
    count_tokens, max_prompt_tokens = prompt_budget(cfg)
    with stage_run(cfg, "prepare"):
        try:
            summary = prepare(cfg, count_tokens, max_prompt_tokens, VALIDATION_DIR)
        finally:
            if VALIDATION_DIR.exists():
                mlflow.log_artifacts(str(VALIDATION_DIR), "validation")
        splits = {s: i for s, i in summary.items() if isinstance(i, dict)}
        mlflow.log_metrics({f"data/{s}_rows": i["rows"] for s, i in splits.items() if "rows" in i})
        mlflow.set_tags({f"data.{s}.hash": i["hash"] for s, i in splits.items() if "hash" in i})
        log_split_inputs(cfg, list(splits), context="output")  # what it wrote: the splits the other stages read
    return summary
