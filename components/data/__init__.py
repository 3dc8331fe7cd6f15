"""Data: generate or ingest prompts, validate them, write the prepared splits."""

# Every source yields these columns, all strings; `solution` is None where a row has no worked
# solution (rl and eval rows).
COLUMNS = ["id", "source", "prompt", "answer", "metadata", "solution"]
SPLITS = ("sft", "rl", "eval")
