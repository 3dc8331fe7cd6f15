"""Data: generate or ingest prompts, validate them, write the prepared splits."""

# Every source yields these columns, all strings; `solution` is None where a row has no worked
# solution (rl and eval rows). `messages` is the JSON list of chat messages before the answer
# (system + user, as in verl's `prompt` column), None for plain-text prompts; `prompt` is always
# the last user message's text, the key for dedupe, contamination checks and tables.
COLUMNS = ["id", "source", "prompt", "answer", "metadata", "solution", "messages"]
SPLITS = ("sft", "rl", "eval")


def messages_column(df) -> list:
    """The `messages` cells of a canonical frame, None where missing: files prepared before the
    column existed (and frames built by hand) have no such column, which means plain-text prompts."""
    if "messages" not in df.columns:
        return [None] * len(df)
    return [m if isinstance(m, str) else None for m in df["messages"]]
