"""Content hashes that tie the evaluation outputs to the exact models and data they scored.

`evaluate` writes `provenance.json` inside `reports/eval` (in the same atomic folder as the tables)
with the sha256 of every model folder it scored and of every benchmark's data. `verify` recomputes
the hashes of what it is about to compare and register, and refuses stale results: a model retrained
after the last evaluation must never be promoted on the previous model's scores.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from components.config import BenchmarkConfig

EVAL_MANIFEST = "provenance.json"
_CHUNK = 1 << 20


class ProvenanceError(ValueError):
    """The evaluation results do not belong to the current models or data."""


def _update_file(digest, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)


def hash_path(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder: every file's relative path, size and bytes, in sorted
    order (streamed, so a multi-gigabyte model folder is never held in memory). A folder's hash does
    not depend on where it lives, on timestamps or on the order the file system lists it."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _update_file(digest, path)
        return digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"cannot hash {path}: no such file or folder")
    files = []
    for dirpath, _, names in os.walk(path, followlinks=True):
        files.extend(Path(dirpath, n) for n in names)
    for rel, file in sorted((f.relative_to(path).as_posix(), f) for f in files):
        if not file.is_file():
            continue
        digest.update(f"{rel}\0{file.stat().st_size}\0".encode())
        _update_file(digest, file)
    return digest.hexdigest()


def benchmark_path(spec: BenchmarkConfig, prepared_dir: str | Path) -> Path:
    """The file a benchmark is read from (the same resolution as components.eval.benchmarks)."""
    return Path(prepared_dir) / f"{spec.split}.parquet" if spec.split is not None else Path(spec.file)


def benchmark_identity(spec: BenchmarkConfig, prepared_dir: str | Path) -> dict:
    path = benchmark_path(spec, prepared_dir)
    return {"path": str(path), "sha256": hash_path(path), "limit": spec.limit}


def eval_manifest(models: dict[str, str | Path], benchmarks: list[BenchmarkConfig],
                  prepared_dir: str | Path) -> dict:
    """What `evaluate` scored: {models: {label: {path, sha256}}, benchmarks: {name: {path, sha256, limit}}}."""
    return {
        "models": {label: {"path": str(p), "sha256": hash_path(p)} for label, p in models.items()},
        "benchmarks": {b.name: benchmark_identity(b, prepared_dir) for b in benchmarks},
    }


def write_eval_manifest(out_dir: str | Path, manifest: dict) -> None:
    (Path(out_dir) / EVAL_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_eval_manifest(eval_dir: str | Path) -> dict:
    path = Path(eval_dir) / EVAL_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProvenanceError(f"{path} is missing: the evaluation results do not say which models and data "
                              "they scored; rerun the evaluate stage") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ProvenanceError(f"{path} is unreadable ({exc}); rerun the evaluate stage") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict) \
            or not isinstance(manifest.get("benchmarks"), dict):
        raise ProvenanceError(f"{path} lacks the models/benchmarks sections; rerun the evaluate stage")
    return manifest


def check_eval_provenance(eval_dir: str | Path, models: dict[str, str | Path], benchmarks: list[BenchmarkConfig],
                          prepared_dir: str | Path) -> dict[str, str]:
    """Refuse (ProvenanceError) unless `eval_dir` was produced from exactly these model folders and
    benchmark data; return {label: current sha256} of the models (the hashes verify registers)."""
    manifest = read_eval_manifest(eval_dir)
    where = Path(eval_dir) / EVAL_MANIFEST
    problems, current = [], {}
    for label, folder in models.items():
        try:
            current[label] = hash_path(folder)
        except FileNotFoundError:
            raise ProvenanceError(f"model {label!r}: {folder} not found (run the stages that build it)") from None
        recorded = (manifest["models"].get(label) or {}).get("sha256")
        if recorded != current[label]:
            problems.append(f"model {label!r} ({folder}): evaluated sha256 {recorded or 'none recorded'}, "
                            f"current sha256 {current[label]}")
    for spec in benchmarks:
        try:
            now = benchmark_identity(spec, prepared_dir)
        except FileNotFoundError:
            raise ProvenanceError(f"benchmark {spec.name!r}: {benchmark_path(spec, prepared_dir)} not found") from None
        then = manifest["benchmarks"].get(spec.name) or {}
        if (then.get("sha256"), then.get("limit")) != (now["sha256"], now["limit"]):
            problems.append(f"benchmark {spec.name!r} ({now['path']}): evaluated sha256 "
                            f"{then.get('sha256') or 'none recorded'} (limit {then.get('limit')}), "
                            f"current sha256 {now['sha256']} (limit {now['limit']})")
    if problems:
        raise ProvenanceError(f"the evaluation results in {Path(eval_dir)} do not belong to the current inputs "
                              f"(recorded in {where}):\n  " + "\n  ".join(problems)
                              + "\nrefusing to register or promote; rerun the evaluate stage")
    return current
