"""The `messages` column under data validation: well-formed chat messages, and what they add to
the prompt the model reads (its bytes and tokens)."""

from __future__ import annotations

import json
from typing import Any, Callable

MESSAGES_CHECK = "messages null, or chat messages ending with the prompt as the user's turn"


def chat_messages(prompt: Any, messages: Any) -> list[dict] | None:
    """The parsed messages of a row when they are well formed: a JSON list of {role, content}
    strings whose last message is the user's turn holding exactly `prompt` (the text that dedupe,
    the leak checks and the tables read). None otherwise."""
    if not isinstance(messages, str):
        return None
    try:
        parsed = json.loads(messages)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not parsed or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in parsed):
        return None
    last = parsed[-1]
    return parsed if last["role"] == "user" and isinstance(prompt, str) and last["content"] == prompt else None


def messages_ok(prompt: Any, messages: Any) -> bool:
    """No messages (a plain-text prompt), or well-formed ones (see chat_messages)."""
    return not isinstance(messages, str) or chat_messages(prompt, messages) is not None


def model_text_bytes(prompt: Any, messages: Any, limit: int, utf8_length: Callable[[str, int], int]) -> int | None:
    """UTF-8 bytes of what the model reads: every message's content for a chat prompt (a system
    prompt counts too), else the prompt; counting stops once past `limit`. None for a missing
    prompt (the not-null check reports it)."""
    if not isinstance(prompt, str):
        return None
    parsed = chat_messages(prompt, messages)
    total = 0
    for text in [m["content"] for m in parsed] if parsed is not None else [prompt]:
        total += utf8_length(text, limit)
        if total > limit:
            break
    return total


def count_prompt_tokens(count_tokens: Callable[..., int], prompt: str, messages: str | None) -> int:
    """Tokens of the prompt as the model reads it: count_tokens(prompt, messages) for a row with
    well-formed messages. Any other row is counted by its prompt alone, so a counter of plain
    prompts (`len` in tests) serves it; malformed messages are reported by their own check."""
    well_formed = chat_messages(prompt, messages) is not None
    return count_tokens(prompt, messages) if well_formed else count_tokens(prompt)
