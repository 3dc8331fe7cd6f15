"""Prompts as the model reads them, and the tokens that end its turn.

`data.chat_template` picks the rendering: `auto` applies the tokenizer's chat template when it has
one (an Instruct model was trained on that layout, and ends its turn with its own token, e.g.
`<|im_end|>`), `none` gives plain text. A rendered prompt carries every special token it needs (the
template's, or the BOS string), so whatever tokenizes it passes add_special_tokens=False; for the
char tokenizer, "<s>" + prompt tokenized so is exactly tokenizer(prompt) with special tokens.
"""

from __future__ import annotations

import json

import pandas as pd

from components.data import messages_column

MODES = ("auto", "none")
IGNORE = -100  # label of a token without loss: torch cross_entropy's default ignore_index


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"chat template mode must be one of {MODES}, not {mode!r}")


def uses_template(tokenizer, mode: str) -> bool:
    _check_mode(mode)
    return mode == "auto" and bool(getattr(tokenizer, "chat_template", None))


def load_messages(value) -> list[dict] | None:
    """A row's `messages` cell (JSON text, as the prepared splits hold it) as a list; None stays None."""
    if value is None or isinstance(value, list):
        return value
    return json.loads(value)


def _conversation(prompt: str, messages: list[dict] | None) -> list[dict]:
    return messages or [{"role": "user", "content": prompt}]


def render_prompt(tokenizer, prompt: str, messages: list[dict] | None, mode: str) -> str:
    """The text the model continues: the chat template with the assistant's generation prompt, or
    plain text (BOS string, then any system message and a blank line, then the prompt; earlier
    turns of a multi-turn chat are dropped)."""
    if uses_template(tokenizer, mode):
        return tokenizer.apply_chat_template(_conversation(prompt, messages), tokenize=False,
                                             add_generation_prompt=True)
    system = [m["content"] for m in messages or [] if m.get("role") == "system"]
    return (tokenizer.bos_token or "") + "".join(f"{s}\n\n" for s in system) + prompt


def render_rows(tokenizer, df: pd.DataFrame, mode: str) -> list[str]:
    """render_prompt for every row of a canonical frame (prompt + messages columns)."""
    return [render_prompt(tokenizer, p, load_messages(m), mode) for p, m in zip(df["prompt"], messages_column(df))]


def rendered_frame(tokenizer, df: pd.DataFrame, mode: str) -> pd.DataFrame:
    """A copy of `df` whose `prompt` column is the rendered text: what the RL trainer samples from."""
    return df.assign(prompt=render_rows(tokenizer, df, mode))


def stop_token_ids(model_or_generation_config, tokenizer) -> list[int]:
    """Every id that ends a turn: generation_config.eos_token_id (an int or a list; an Instruct
    model's end-of-turn token is listed there, not in the tokenizer) then tokenizer.eos_token_id,
    deduplicated in order."""
    config = getattr(model_or_generation_config, "generation_config", model_or_generation_config)
    eos = getattr(config, "eos_token_id", None)
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids))


def sft_example(tokenizer, prompt: str, messages: list[dict] | None, solution: str, mode: str,
                stop_ids: list[int]) -> tuple[list[int], list[int]]:
    """(input_ids, labels): the rendered prompt then the assistant's turn, loss on that turn only.

    With a template the turn is what the template adds for the assistant message, cut right after
    its first stop token (ChatML's trailing newline after <|im_end|> is never generated, so it is not
    trained). Plain text: the solution then the tokenizer's EOS.
    """
    head = render_prompt(tokenizer, prompt, messages, mode)
    if uses_template(tokenizer, mode):
        full = tokenizer.apply_chat_template(_conversation(prompt, messages) + [
            {"role": "assistant", "content": solution}], tokenize=False, add_generation_prompt=False)
        if not full.startswith(head):
            raise ValueError("the chat template renders a conversation whose beginning is not the rendered prompt "
                             "(add_generation_prompt=True), so the assistant's turn cannot be separated for SFT: "
                             f"prompt {head[-80:]!r}, conversation {full[:len(head) + 80]!r}; set data.chat_template "
                             "to none or fix the template")
        target = tokenizer(full[len(head):], add_special_tokens=False)["input_ids"]
        ends = [i for i, t in enumerate(target) if t in set(stop_ids)]
        if not ends:
            raise ValueError(f"the chat template's assistant turn {full[len(head):]!r} holds none of the stop ids "
                             f"{stop_ids} (generation_config.eos_token_id + tokenizer.eos_token_id): a model "
                             "trained on it would never end its turn")
        target = target[: ends[0] + 1]
    else:
        target = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    return ids + target, [IGNORE] * len(ids) + target
