"""Load prompts from local files or the hub into the canonical columns, and split them.

Layouts: verl (data_source, prompt as chat messages, reward_model.ground_truth) and Hugging Face
(question/answer or problem/solution). Every failure names the file or dataset at fault.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.config import DataConfig
from components.data import COLUMNS
from components.data.validate import answer_conflicts, prompt_key
from components.reward.extract import extract_boxed
from components.reward.gym import RG_PREFIX
from components.reward.gym_tasks import unsupported_tasks_error

log = logging.getLogger(__name__)

VERL_COLUMNS = ("data_source", "prompt", "reward_model")
HF_PROMPT_COLUMNS = ("question", "problem")
HF_ANSWER_COLUMNS = ("answer", "solution")


class IngestError(ValueError):
    """A source file or dataset is missing, unreadable or has the wrong columns."""


def _jsonable(value: Any) -> Any:
    """Parquet hands back numpy arrays and scalars; JSON wants lists and plain numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_table(path: str | Path) -> pd.DataFrame:
    """A parquet, jsonl or json file as a DataFrame; errors name the path."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"data file not found: {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if path.suffix == ".json":
            try:
                return pd.read_json(path, dtype=False)
            except ValueError:  # a .json file holding one record per line
                return pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:
        raise IngestError(f"cannot read data file {path}: {exc}") from exc
    raise IngestError(f"data file {path}: unsupported extension {path.suffix!r} (use .parquet, .jsonl or .json)")


def _text(value: Any) -> str | None:
    """A cell as text, or None when it is missing (None, NaN) or not text (bytes, lists, dicts):
    data validation then reports the row by id instead of training on 'None', 'nan' or b'...'."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return None if isinstance(value, (float, np.floating)) and np.isnan(value) else str(value)
    return None


def _user_text(prompt: Any) -> str | None:
    """The last user message of a chat prompt (or the prompt itself when it is plain text);
    None when the prompt is missing, not text, or has no user message."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, (list, tuple, np.ndarray)):
        return _text(prompt)
    messages = [m for m in _jsonable(prompt) if isinstance(m, dict) and m.get("role") == "user"]
    return _text(messages[-1].get("content")) if messages else None


def _chat_messages(prompt: Any) -> str | None:
    """A chat prompt's messages as the canonical JSON string; None for a plain-text (or missing) prompt.
    Kept as given: data validation reports a row whose messages are malformed."""
    if not isinstance(prompt, (list, tuple, np.ndarray)):
        return None
    return json.dumps(_jsonable(prompt), ensure_ascii=False, default=str)


class _SeveralAnswers(ValueError):
    """A list ground truth with more than one distinct answer (to_canonical names the rows)."""


def _reference_answer(text: Any) -> tuple[str | None, str | None]:
    """(answer, worked solution) from a reference: boxed answer, GSM8K '#### 42', or the text itself.

    A list (verl stores `["70"]`) must hold one distinct answer: the prepared `answer` column is one
    string per row, which data validation's checks, the trainer and the evaluation all read as THE answer,
    so a second answer is refused (_SeveralAnswers) rather than silently dropped."""
    if isinstance(text, (list, tuple, np.ndarray)):
        items = [t for t in (_text(v) for v in text) if t is not None and t.strip()]
        if len({t.strip() for t in items}) > 1:
            raise _SeveralAnswers(items)
        text = items[0] if items else None
    text = _text(text)
    if text is None:
        return None, None
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", ""), text
    if "\\boxed" in text or "\\fbox" in text:
        return extract_boxed(text), text
    return text.strip(), None


def _check_columns(df: pd.DataFrame, path: str, layout: str) -> None:
    cols = set(df.columns)
    ok = (
        set(VERL_COLUMNS) <= cols
        if layout == "verl"
        else bool(cols & set(HF_PROMPT_COLUMNS)) and bool(cols & set(HF_ANSWER_COLUMNS))
    )
    if not ok:
        expected = (
            "data_source, prompt, reward_model (verl layout)"
            if layout == "verl"
            else "question or problem, plus answer or solution (Hugging Face layout)"
        )
        raise IngestError(f"{path}: wrong columns for the {layout} layout; found {sorted(cols)}, expected {expected}")


def _detect_layout(df: pd.DataFrame) -> str:
    return "verl" if set(VERL_COLUMNS) <= set(df.columns) else "hf"


def _verl_row(row: dict) -> dict:
    reward_model = row.get("reward_model")
    reward_model = reward_model if isinstance(reward_model, dict) else {}
    answer, solution = _reference_answer(reward_model.get("ground_truth"))
    extra = {k: row[k] for k in ("extra_info", "ability") if k in row and row[k] is not None}
    return {"source": _text(row["data_source"]), "prompt": _user_text(row["prompt"]), "answer": answer,
            "solution": solution, "metadata": _jsonable(extra), "messages": _chat_messages(row["prompt"])}


def _hf_row(row: dict, source: str) -> dict:
    prompt = next(row[c] for c in HF_PROMPT_COLUMNS if c in row)
    answer, solution = _reference_answer(row.get("answer"))
    if _text(row.get("solution")) is not None:
        # MATH style: the solution is a worked solution; an explicit answer column wins over its box.
        boxed, solution = _reference_answer(row["solution"])
        answer = answer or boxed
        solution = solution or _text(row["solution"])
    skip = set(HF_PROMPT_COLUMNS) | set(HF_ANSWER_COLUMNS)
    return {"source": source, "prompt": _user_text(prompt), "answer": answer, "solution": solution,
            "metadata": _jsonable({k: v for k, v in row.items() if k not in skip}), "messages": None}


def _ids(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def to_canonical(df: pd.DataFrame, name: str, layout: str, id_prefix: str, source: str | None = None) -> pd.DataFrame:
    """Map a verl or HF layout table to canonical rows with ids `{id_prefix}-{row:06d}`.

    Refuses (IngestError naming the rows) a list ground truth with several answers, and an empty
    data_source, which would otherwise be scored as math (a null one is data validation's to report)."""
    _check_columns(df, name, layout)
    rows, several, blank = [], {}, []
    for i, row in enumerate(df.to_dict("records")):
        row_id = f"{id_prefix}-{i:06d}"
        try:
            out = _verl_row(row) if layout == "verl" else _hf_row(row, source or id_prefix)
        except _SeveralAnswers as exc:
            several[row_id] = exc.args[0]
            continue
        if isinstance(out["source"], str) and not out["source"].strip():
            blank.append(row_id)
        out["metadata"] = json.dumps({"origin": name, "row": i, **out["metadata"]}, sort_keys=True, default=str)
        rows.append({"id": row_id, **out})
    if several:
        first = next(iter(several.values()))
        raise IngestError(f"{name}: rows {_ids(list(several))} give several reference answers (e.g. {str(first)[:200]}); "
                          "a prepared row holds one answer, so keep the one the verifier should match "
                          "(it accepts any mathematically equal form)")
    if blank:
        raise IngestError(f"{name}: empty data_source in rows {_ids(blank)}; give every row a source name "
                          f"(any name is scored as math; {RG_PREFIX}<task> picks that reasoning-gym verifier)")
    return pd.DataFrame(rows, columns=COLUMNS)


def load_files(paths: list[str], layout: str | None) -> pd.DataFrame:
    """Canonical rows of local files; layout None detects verl vs HF per file."""
    frames, prefixes = [], set()
    for path in paths:
        df = read_table(path)
        prefix = Path(path).stem
        while prefix in prefixes:  # two files with one stem would otherwise share ids
            prefix += "_"
        prefixes.add(prefix)
        frames.append(to_canonical(df, str(path), layout or _detect_layout(df), prefix))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def load_hub(name: str, split: str) -> pd.DataFrame:
    """A hub dataset in the HF layout; a clear error naming it when the hub cannot be reached."""
    try:
        import datasets

        df = datasets.load_dataset(name, split=split).to_pandas()
    except Exception as exc:
        raise IngestError(
            f"cannot load hub dataset {name!r} (split {split!r}): {type(exc).__name__}: {exc}. The hub may be "
            "unreachable (HF_HUB_OFFLINE=1 is set by default); download it and use data.source=hf_local instead"
        ) from exc
    return to_canonical(df, f"hub dataset {name}", "hf", name.replace("/", "_"), source=name)


def _dedupe(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """One row per prompt (whitespace ignored), keeping the first. Rows without a prompt, and every
    row of a prompt repeated with different answers, are kept so data validation names them."""
    keys = df["prompt"].map(prompt_key)
    conflict = answer_conflicts(df)
    repeated = keys.notna() & keys.duplicated(keep="first") & ~conflict
    if repeated.any():
        log.warning("%s: dropped %d rows with a repeated prompt", what, int(repeated.sum()))
    if conflict.any():
        log.warning("%s: %d rows repeat a prompt with a different answer; kept for data validation to "
                    "report", what, int(conflict.sum()))
    return df[~repeated].reset_index(drop=True)


def split_rows(
    rows: pd.DataFrame, eval_rows: pd.DataFrame | None, data: DataConfig, seed: int
) -> dict[str, pd.DataFrame]:
    """Deterministic split: eval = eval files (whole) or num_eval rows; rl = the rest (<= num_rl);
    sft = rows of the rest that carry a worked solution (<= num_sft), possibly also in rl."""
    rows = _dedupe(rows, "train files")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    rows = rows.iloc[order].reset_index(drop=True)
    conflict = answer_conflicts(rows)
    if conflict.any():  # first, so that no split's size cap hides them from data validation (which then fails)
        rows = pd.concat([rows[conflict], rows[~conflict]], ignore_index=True)
    if eval_rows is None:
        if len(rows) <= data.num_eval:
            raise ValueError(f"the data files hold {len(rows)} distinct prompts: not enough for num_eval="
                             f"{data.num_eval} plus at least one training prompt")
        eval_df, rows = rows.iloc[: data.num_eval], rows.iloc[data.num_eval :]
    else:
        eval_df = _dedupe(eval_rows, "eval files")
        leaked = rows["prompt"].map(prompt_key).isin(set(eval_df["prompt"].map(prompt_key).dropna()))
        if leaked.any():  # decontaminate: an eval prompt must never be trained on
            log.warning("dropped %d training rows whose prompt is in the eval files", int(leaked.sum()))
            rows = rows[~leaked]
    rl = rows.iloc[: data.num_rl]
    # Empty for answer-only data: components.data.prepare.sft_rows refuses that unless sft.enabled is false.
    sft = rows[rows["solution"].notna()].iloc[: data.num_sft].copy()
    # SFT may warm-start on problems RL also sees (a small file could not fill both otherwise);
    # the suffix keeps ids unique across splits while naming the source row.
    sft["id"] = sft["id"] + "-sft"
    return {"sft": sft.reset_index(drop=True), "rl": rl.reset_index(drop=True), "eval": eval_df.reset_index(drop=True)}


def refuse_unaccepted_gym_tasks(*frames: pd.DataFrame | None) -> None:
    """An IngestError naming every reasoning-gym task in the rows that the verifier does not accept
    (components.reward.gym_tasks: its scorer could run model output as code), and the accepted ones."""
    tasks = {s[len(RG_PREFIX):] for df in frames if df is not None for s in df["source"]
             if isinstance(s, str) and s.startswith(RG_PREFIX)}
    error = unsupported_tasks_error(tasks)
    if error:
        raise IngestError(error)


def load_source(data: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """sft/rl/eval canonical splits for whichever data.source is configured."""
    if data.source == "reasoning_gym":
        from components.data.arithmetic import generate_splits

        splits = generate_splits(data.task, data.num_sft, data.num_rl, data.num_eval, seed)
        refuse_unaccepted_gym_tasks(*splits.values())
        return splits
    if data.source == "hf_hub":
        rows = load_hub(str(data.hub_dataset), data.hub_split)
    else:
        rows = load_files(data.files, "verl" if data.source == "verl" else "hf")
    eval_rows = load_files(data.eval_files, None) if data.eval_files else None
    refuse_unaccepted_gym_tasks(rows, eval_rows)
    return split_rows(rows, eval_rows, data, seed)
