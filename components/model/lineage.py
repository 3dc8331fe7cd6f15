"""What a pipeline model was built from, recorded beside its weights (lineage.json).

The sft stage records the base model (model.name_or_path) in models/sft, and whether it trained it
(sft.enabled) or wrote the base model itself; the rl stage refuses a models/sft built from another base
than the configured one, and copies the record into models/rl, so a registered model names its base.
A local folder is known by its absolute path, its config.json's sha256 and the size and sha256 of each
of its weight and tokenizer files; a hub model by its id, the tiny model by its architecture.
A local folder lies in models/base/, a DVC dep of sft and rl (components/config/paths.py), so `dvc repro`
reruns sft after its files change; this record is the second guard, for what DVC does not see: the rl
stage run by hand (`python -m components.cli rl`), or after `dvc commit` recorded the changed folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from components.config import ConfigError, ModelConfig
from components.infra.provenance import hash_path

LINEAGE_FILE = "lineage.json"
SETTING = "model.name_or_path"
_COMPARED = ("resolved", "tiny", "config_sha256")  # what makes two base models the same one
# Files of a model folder that do not change the model (its card, license; hidden git and cache files
# are left out too), and this module's own record (a base folder may be a pipeline model folder).
_NOT_MODEL = ("README", "LICENSE", "USE_POLICY", "NOTICE", LINEAGE_FILE.upper())


def folder_content(path: Path) -> dict[str, dict]:
    """name -> {bytes, sha256} of each file at the top of a model folder that can change the model
    (config, weights, tokenizer, chat template, generation settings); hidden files, the model card and
    the lineage record are left out. Each file is hashed streamed (~1 GB/s on one core when cached:
    seconds for a 1.5B model; the sft stage hashes once, the rl stage once more to check)."""
    return {f.name: {"bytes": f.stat().st_size, "sha256": hash_path(f)} for f in sorted(path.iterdir())
            if f.is_file() and not f.name.startswith(".") and not f.name.upper().startswith(_NOT_MODEL)}


def base_identity(model: ModelConfig) -> dict:
    """The configured base model: its name as given, what it resolves to (an absolute folder, a hub id,
    or `tiny` with its architecture), and for a local folder the sha256 of its config.json and its
    content (folder_content)."""
    from components.model.factory import TINY

    name = model.name_or_path
    if name == TINY:
        return {"name_or_path": name, "resolved": TINY, "tiny": model.tiny.model_dump()}
    path = Path(name).expanduser()
    if path.is_dir():
        config = path / "config.json"
        digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
        return {"name_or_path": name, "resolved": str(path.resolve()), "config_sha256": digest,
                "content": folder_content(path)}
    return {"name_or_path": name, "resolved": name}  # a hub id (source.resolve has checked it exists)


def write_lineage(folder: str | Path, model: ModelConfig, sft_trained: bool) -> None:
    """Record, in a model folder being written, the base model it was built from and whether SFT trained it."""
    record = {"base": base_identity(model), "sft_trained": sft_trained}
    (Path(folder) / LINEAGE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def copy_lineage(record: dict, folder: str | Path, started_from: str | Path) -> None:
    """Carry a start model's record into a model trained from it (models/rl from models/sft)."""
    (Path(folder) / LINEAGE_FILE).write_text(
        json.dumps({**record, "started_from": str(started_from)}, indent=2, sort_keys=True) + "\n")


def read_lineage(folder: str | Path) -> dict | None:
    """The folder's record; None when it has none (a folder written before records existed)."""
    path = Path(folder) / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); rerun the sft stage") from None
    if not isinstance(record, dict) or not isinstance(record.get("base"), dict) \
            or not isinstance(record.get("sft_trained"), bool):
        raise ConfigError(f"{path} does not name a base model and whether SFT trained it; rerun the sft stage")
    return record


def sft_skipped(folder: str | Path) -> bool:
    """Whether the SFT folder holds the base model itself (written under sft.enabled=false)."""
    record = read_lineage(folder)
    return record is not None and record.get("sft_trained") is False


def check_built_from(folder: str | Path, model: ModelConfig) -> dict:
    """The folder's record, or a one-line ConfigError naming both models unless it was built from the
    configured base model (or when it records no base at all)."""
    record = read_lineage(folder)
    if record is None:
        raise ConfigError(f"{folder} does not record the base model it was built from ({LINEAGE_FILE}); "
                          "rerun the sft stage")
    built, now = record["base"], base_identity(model)
    if any(built.get(k) != now.get(k) for k in _COMPARED):
        raise ConfigError(f"{folder} was built from base model {_describe(built, now)}, but {SETTING} is "
                          f"{_describe(now, built)}: rerun the sft stage, or set {SETTING} back")
    if built.get("content") != now.get("content"):  # same folder and config: the weights or tokenizer changed
        was, new = built.get("content") or {}, now.get("content") or {}
        changed = sorted(n for n in set(was) | set(new) if was.get(n) != new.get(n))
        raise ConfigError(f"{folder} was built from base model folder {now['resolved']}, whose files have changed "
                          f"since ({_listed(changed) if was else 'the record predates content fingerprints'}); "
                          f"rerun the sft stage (`dvc repro -f sft`), or put the files back")
    return record


def _listed(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _describe(base: dict, other: dict) -> str:
    """The name, the folder it resolves to when that differs, and what differs when the names agree."""
    text = repr(base.get("name_or_path"))
    if base.get("resolved") not in (None, base.get("name_or_path")):
        text += f" ({base['resolved']})"
    if base.get("resolved") == other.get("resolved"):
        text += "".join(f" with {k} {base.get(k)}" for k in ("tiny", "config_sha256") if base.get(k) != other.get(k))
    return text
