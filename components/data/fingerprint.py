"""The fingerprint of one input data file, which makes DVC see the file's content.

dvc.yaml cannot list data.files (a list param) as deps of prepare, but it can make one stage per
file (`foreach`): stage `input@FILE` (data.files) or `eval_input@FILE` (data.eval_files) depends on
FILE and runs `python -m components.cli fingerprint FILE data/inputs/.../FILE.json`, and prepare
depends on data/inputs. Editing a file makes its input stage stale in `dvc status`; `dvc repro`
rewrites the fingerprint, which changes data/inputs, so prepare and everything after it rerun.

The fingerprint also reads the file as ingest does, so an unreadable file fails here, naming it.
"""

from __future__ import annotations

from pathlib import Path

from components.config import Config, ConfigError
from components.infra.provenance import hash_path


def fingerprint(path: str | Path) -> dict:
    """sha256, size and row count of a data file; IngestError (naming it) when ingest cannot read it."""
    from components.data.ingest import read_table

    rows = len(read_table(path))  # the reader prepare uses: same extensions, same errors
    return {"file": str(path), "sha256": hash_path(path), "bytes": Path(path).stat().st_size, "rows": rows}


def run(cfg: Config, file: str, out: str) -> dict:
    """Write `file`'s fingerprint as JSON to `out` (one of dvc.yaml's input stages)."""
    from components.infra.atomic_io import atomic_write_json

    if file not in cfg.data.files + cfg.data.eval_files:
        raise ConfigError(f"{file} is in neither data.files nor data.eval_files; "
                          "the input stages fingerprint only those (run `dvc repro`, not this command)")
    record = fingerprint(file)
    atomic_write_json(out, record)
    return record
