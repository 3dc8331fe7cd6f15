"""Atomic RL checkpoints: written to a temporary folder, fsynced, renamed; `latest` updated last.

Layout of one checkpoint folder `iter-000050/`:
  model/                 the policy as a Hugging Face folder (safetensors), usable on its own
  weights.safetensors    the exact trainable state, loaded back into the live model on resume
  trainer_state-rankR.pt one per process: optimizer, sampler, PIPO state (each rank caches its
                         own shard of the previous batch), RNGs, counters: tensors and plain
                         containers only, read with torch.load(weights_only=True)
  meta.json              iteration and the fingerprint of the config that wrote it
  checksums.json         sha256 of every other file, written last: a checkpoint whose bytes
                         changed after it was written (a flipped bit) is refused like a damaged one

Nothing here unpickles arbitrary objects. Also here: the trainer state a checkpoint holds
(`trainer_state`, `load_trainer_state`), which checkpoint a rerun resumes from (`resume_point`), and
the fingerprint of a run that names its checkpoint folder (`run_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from components.infra.faults import maybe_fault
from components.infra.atomic_io import atomic_dir, atomic_write_text, claim_dir
from components.rl import streams

log = logging.getLogger(__name__)

LATEST = "latest"
BEST = "best"  # the guard's best verified checkpoints (rl.guard): ROOT/best/iter-NNNNNN, outside the rotation


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by another model or configuration."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file is missing, empty or unreadable."""


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


MANIFEST = "checksums.json"
REQUIRED_FILES = ("meta.json", "weights.safetensors", "trainer_state-rank0.pt", MANIFEST)


def checkpoint_iteration(path: Path) -> int | None:
    """The iteration an iter-NNNNNN folder holds (None for any other name)."""
    name = Path(path).name
    return int(name[len("iter-"):]) if name.startswith("iter-") and name[len("iter-"):].isdigit() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST}


def write_manifest(folder: Path) -> None:
    """sha256 of every file in the checkpoint folder; written last, before the folder is published."""
    (Path(folder) / MANIFEST).write_text(json.dumps({"sha256": _checksums(folder)}, indent=2, sort_keys=True))


def verify_manifest(path: Path) -> None:
    """Raise CorruptCheckpointError when any file differs from, or is missing from, the manifest."""
    try:
        expected = json.loads((Path(path) / MANIFEST).read_text())["sha256"]
        assert isinstance(expected, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise CorruptCheckpointError(f"checkpoint {path}: {MANIFEST} unreadable: {exc!r}") from exc
    actual = _checksums(path)
    bad = sorted(f for f in set(expected) | set(actual) if expected.get(f) != actual.get(f))
    if bad:
        raise CorruptCheckpointError(f"checkpoint {path}: checksum mismatch in {', '.join(bad[:5])}"
                                     f"{' and more' if len(bad) > 5 else ''} (the files changed after they were written)")


def _claim(root: Path) -> None:
    """Outside the repository, `latest` is rewritten only in a folder the pipeline owns; the checkpoint
    folder is claimed before its best/ (created inside it, it would leave the folder non-empty unclaimed)."""
    if Path(root).name == BEST:
        claim_dir(Path(root).parent)
    claim_dir(root)


def rank_state_name(rank: int) -> str:
    return f"trainer_state-rank{rank}.pt"


def stage_rank_state(root: Path, rank: int, state: dict) -> Path:
    """Every rank writes its own trainer state next to the checkpoints before rank 0 publishes."""
    _claim(root)
    staging = Path(root) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    final = staging / rank_state_name(rank)
    tmp = final.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, final)
    return final


def save_checkpoint(root: Path, iteration: int, model, tokenizer, trainer_state: dict | list[Path], meta: dict,
                    keep: int | None = 3, state_dict: dict | None = None) -> Path:
    """Write iter-NNNNNN atomically, point `latest` at it, keep the newest `keep` checkpoints (None: all,
    the caller prunes: the guard's best ones, `prune_best`).

    trainer_state: this process's state, or the staged per-rank files (stage_rank_state) of a
    multi-process run, moved into the checkpoint. state_dict: the full weights when the live
    module is sharded (FSDP / ZeRO-3 gather them first).
    """
    root = Path(root)
    _claim(root)
    target = root / checkpoint_name(iteration)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "model", safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp / "model")
        maybe_fault("checkpoint", iteration)  # tests: a crash with the weights half written
        if state_dict is None:
            save_model(model, str(tmp / "weights.safetensors"))
        else:
            # the keys save_model would keep: one name per tied tensor, as load_model expects
            # (not named `keep`: that would shadow the count of checkpoints to keep, used below)
            names = set(model.state_dict()) - _tied_aliases(model)
            save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items() if k in names},
                      str(tmp / "weights.safetensors"))
        if isinstance(trainer_state, dict):
            torch.save(trainer_state, tmp / rank_state_name(0))
        else:
            for rank, staged in enumerate(trainer_state):
                shutil.move(str(staged), tmp / rank_state_name(rank))
        (tmp / "meta.json").write_text(json.dumps({"iteration": iteration, **meta}, indent=2, sort_keys=True))
        write_manifest(tmp)  # last: it vouches for every file above
    atomic_write_text(root / LATEST, target.name + "\n")
    # Keep the newest `keep`, never the one just written (a run that restarted below older,
    # longer-run checkpoints writes lower iteration numbers than they hold).
    others = sorted(p for p in root.glob("iter-*") if p.is_dir() and p.name != target.name)
    for path in others[: max(len(others) - (keep - 1), 0) if keep is not None else 0]:
        shutil.rmtree(path, ignore_errors=True)
    return target


def prune_best(root: Path, current: int | None) -> list[Path]:
    """Delete the guard's best checkpoints (root/best) that neither the run (`current`, its best iteration)
    nor a kept regular checkpoint (meta.json `guard_best`) refers to: a resumed run can roll back to the
    best its checkpoint knew, even after a later best was written."""
    wanted = {current}
    for path in Path(root).glob("iter-*"):
        try:
            wanted.add(json.loads((path / "meta.json").read_text()).get("guard_best"))
        except (OSError, ValueError):  # a damaged checkpoint refers to nothing
            continue
    stale = [p for p in (Path(root) / BEST).glob("iter-*") if p.is_dir() and checkpoint_iteration(p) not in wanted]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _tied_aliases(model) -> set[str]:
    """State-dict names that alias another entry's storage (tied embeddings), all but the first."""
    seen: dict[tuple, str] = {}
    aliases = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = (id(tensor),)
        if key in seen:
            aliases.add(name)
        else:
            seen[key] = name
    return aliases


def is_complete(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() and (path / f).stat().st_size > 0 for f in REQUIRED_FILES)


def latest_checkpoint(root: Path) -> Path | None:
    """The folder `latest` names, or None when there is none yet."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text().strip()
    return path if path.is_dir() else None


def resume_candidates(root: Path) -> list[Path]:
    """Checkpoints to try, best first: the one `latest` names, then the others newest first.

    A crash can leave `latest` missing or naming a folder that is gone or damaged; the caller
    tries the next candidate and says so.
    """
    root = Path(root)
    named = latest_checkpoint(root)
    others = sorted((p for p in root.glob("iter-*") if p.is_dir() and p != named), reverse=True)
    return ([named] if named is not None else []) + others


def remove_partial_writes(root: Path) -> list[Path]:
    """Delete temporary folders a killed writer left behind (never a published checkpoint)."""
    leftovers = [p for p in Path(root).glob(".iter-*.tmp-*") if p.is_dir()]
    leftovers += [p for p in [Path(root) / ".staging"] if p.is_dir()]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def folder_identity(path: Path) -> str:
    """A cheap identity of a model folder: names, sizes and the head and tail bytes of each file.

    Enough to tell one SFT checkpoint from another without hashing gigabytes of weights.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path)}:{size}".encode())
        with open(file, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def load_checkpoint(path: Path, model, expected_meta: dict, rank: int = 0) -> dict:
    """Load weights into `model` and return the trainer state; refuse a checkpoint of another config.

    Raises CheckpointMismatchError naming every differing field, or CorruptCheckpointError when a
    file is missing or unreadable.
    """
    if not is_complete(path):
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        raise CorruptCheckpointError(f"checkpoint {path} is incomplete (missing or empty: {missing})")
    verify_manifest(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise CorruptCheckpointError(f"checkpoint {path}: meta.json unreadable: {exc}") from exc
    diffs = [f"{k}: checkpoint {meta.get(k)!r} != now {v!r}" for k, v in expected_meta.items() if meta.get(k) != v]
    if diffs:
        raise CheckpointMismatchError(f"checkpoint {path} was written by a different setup:\n  " + "\n  ".join(diffs))
    try:
        weights = load_file(str(path / "weights.safetensors"))
        state = torch.load(path / rank_state_name(rank), weights_only=True)
    except Exception as exc:  # safetensors and torch raise several types for a damaged file
        raise CorruptCheckpointError(f"checkpoint {path}: unreadable: {exc}") from exc
    own = {k for k in model.state_dict()}
    if not set(weights) <= own:
        raise CheckpointMismatchError(f"checkpoint {path} holds weights this model lacks: "
                                      f"{sorted(set(weights) - own)[:5]}")
    load_model(model, str(path / "weights.safetensors"))
    return state


# ---- what a resumed run needs to continue exactly ------------------------------------------------


def trainer_state(optimizer, sampler, pipo, skipped_total: int, probe=None, curve: list | None = None,
                  guard=None) -> dict:
    """This process's trainer state: optimizer, prompt sampler, PIPO window and cached batch, the
    improvement probe's series, the guard's best and rollbacks, the skipped-update count, the curves so
    far (components/rl/curves.py) and the torch, numpy and python RNGs. Tensors and plain values only."""
    return {
        "curve": json.dumps(curve or []),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.state_dict(),
        "pipo": pipo.state_dict() if pipo is not None else {},
        "probe": probe.state_dict() if probe is not None else {},
        **({"guard": guard.state_dict()} if guard is not None else {}),
        "skipped_total": skipped_total,
        "rng_torch": torch.get_rng_state(),
        "rng_numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "rng_numpy_pos": int(np.random.get_state()[2]),
        "rng_python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }


def load_trainer_state(state: dict, optimizer, sampler, pipo, probe=None, guard=None) -> int:
    """Restore what `trainer_state` saved (the RNGs included); returns the skipped-update count.
    sampler or guard None: left as they are (a guard's rollback keeps its own count and moves on)."""
    optimizer.load_state_dict(state["optimizer"])
    if sampler is not None:
        sampler.load_state_dict(state["sampler"])
    if guard is not None and "guard" in state:
        guard.load_state_dict(state["guard"])
    if pipo is not None:
        pipo.load_state_dict(state["pipo"])
    if probe is not None and state.get("probe"):
        probe.load_state_dict(state["probe"])
    torch.set_rng_state(state["rng_torch"])
    np.random.set_state(("MT19937", state["rng_numpy"].numpy().astype(np.uint32), int(state["rng_numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(int(x) for x in state["rng_python"].tolist()), None))
    return int(state["skipped_total"])


def saved_curve(state: dict) -> list[dict]:
    """The curves a checkpoint holds (none in one written before they were kept)."""
    return json.loads(state.get("curve") or "[]")


def resume_point(root: Path, max_iteration: int, load: Callable[[Path], dict]) -> tuple[Path, dict] | None:
    """The checkpoint a rerun continues from, and the trainer state `load(path)` returned; None: start over.

    Candidates come from `resume_candidates`: the one `latest` names, then the others newest first.
    Only checkpoints at or below max_iteration (rl.iterations) count: the iteration count is left out
    of the fingerprint (so raising it continues a run), and a lowered one must not return a model
    trained for longer than asked. A damaged candidate (CorruptCheckpointError from `load`, a checksum
    mismatch included) falls back to the next one, with a warning; a checkpoint of another setup
    raises CheckpointMismatchError naming what differs.
    """
    candidates = resume_candidates(root)
    beyond = [p for p in candidates if (checkpoint_iteration(p) or 0) > max_iteration]
    if beyond:
        log.warning("rl: ignoring checkpoint(s) %s in %s: past rl.iterations=%d (a longer run of this "
                    "configuration wrote them); using the newest checkpoint at or below iteration %d instead",
                    ", ".join(sorted(p.name for p in beyond)), root, max_iteration, max_iteration)
        candidates = [p for p in candidates if p not in beyond]
    for rank_in_list, path in enumerate(candidates):
        try:
            state = load(path)
        except CorruptCheckpointError as exc:
            log.warning("rl: %s; falling back to the previous checkpoint", exc)
            continue
        if rank_in_list > 0:
            log.warning("rl: resuming from %s, not the one `latest` named", path.name)
        return path, state
    if candidates or beyond:
        log.warning("rl: no loadable checkpoint%s in %s; starting from iteration 0",
                    f" at or below iteration {max_iteration}" if beyond else "", root)
    return None


def run_fingerprint(cfg, seed: int, num_prompts: int, world: int, extra: str = "") -> str:
    """Identity of a training trajectory (cfg: RLConfig): what must match for a checkpoint to be resumable.

    Bookkeeping fields (iteration count, logging, checkpoint cadence, paths) are left out, so a
    run can be extended or re-logged and still resume. The random streams' derivation is in: a run
    written with other streams would not continue as it would have.
    """
    trajectory = cfg.model_dump(exclude={"iterations", "log_every", "checkpoint_every", "keep_checkpoints", "out_dir",
                                         "checkpoint_dir"})
    blob = json.dumps([trajectory, seed, num_prompts, world, extra, streams.DERIVATION], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def active_run_id() -> str | None:
    """The MLflow run this process logs to, recorded in checkpoints so a resumed run can name it."""
    try:
        import mlflow
    except ImportError:  # the vLLM test environment has no MLflow
        return None
    run = mlflow.active_run()
    return run.info.run_id if run is not None else None
