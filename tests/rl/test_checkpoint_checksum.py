"""Checkpoints carry a sha256 manifest, written last and verified on load.

Without it, 64 flipped bytes in the newest checkpoint's weights loaded and then broke every rerun
(no fallback), and a flipped low bit of one float resumed silently with different weights. Now
either is a damaged checkpoint: the rerun warns, resumes from the previous one, and ends with
exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import struct

import pytest
import torch

from components.config import load_config
from components.model.factory import initial_policy
from components.rl.checkpoint import MANIFEST
from tests.support.rl import TINY as RL_TINY
from tests.support.rl import parity_rewards_on_one_thread, run_trainer

TINY = RL_TINY + ["rl.checkpoint_every=2"]


deterministic = pytest.fixture(autouse=True)(parity_rewards_on_one_thread)


@pytest.fixture(scope="module")
def policy():
    return initial_policy(load_config(overrides=TINY).model, seed=0)


def run(policy, iterations: int, checkpoint_dir=None, resume=False):
    return run_trainer(policy, ["rl.checkpoint_every=2"], iterations, checkpoint_dir, resume)


def _tensor_bytes(path, name=None) -> tuple[int, int]:
    """(start, end) byte offsets in a safetensors file of one float32 tensor's data."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    name = name or max((k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"),
                       key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])
    begin, end = header[name]["data_offsets"]
    return 8 + header_len + begin, 8 + header_len + end


def flip_64_bytes(path):
    start, end = _tensor_bytes(path)
    data = bytearray(path.read_bytes())
    middle = (start + end) // 2
    for i in range(middle, middle + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_low_bit(path):
    start, _ = _tensor_bytes(path)
    data = bytearray(path.read_bytes())
    data[start + 4 * 7] ^= 0x01  # the lowest mantissa bit of the 8th float (little-endian)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, file", [
    (flip_64_bytes, "weights.safetensors"),
    (flip_low_bit, "weights.safetensors"),
    (flip_low_bit, "model/model.safetensors"),
])
def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous_one(policy, tmp_path, caplog, damage, file):
    uninterrupted, _ = run(policy, 6)
    ckpt = tmp_path / "ckpt"
    run(policy, 4, checkpoint_dir=ckpt)  # checkpoints 2 and 4, `latest` names 4
    assert (ckpt / "latest").read_text().strip() == "iter-000004"
    damage(ckpt / "iter-000004" / file)

    with caplog.at_level(logging.INFO, logger="components.rl.trainer"):
        model, result = run(policy, 6, checkpoint_dir=ckpt, resume=True)
    log = caplog.text
    assert "checksum mismatch" in log and file in log and "falling back to the previous checkpoint" in log, log
    assert f"resumed from {ckpt / 'iter-000002'} at iteration 2" in log, log
    assert result.resumed_from == 2 and len(result.history) == 4
    for k, v in uninterrupted.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_the_manifest_covers_every_file_of_the_checkpoint(policy, tmp_path):
    ckpt = tmp_path / "ckpt"
    run(policy, 2, checkpoint_dir=ckpt)
    folder = ckpt / "iter-000002"
    listed = set(json.loads((folder / MANIFEST).read_text())["sha256"])
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    assert listed == on_disk and "weights.safetensors" in listed and "model/model.safetensors" in listed


def test_a_checkpoint_without_a_manifest_is_not_trusted(policy, tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    run(policy, 4, checkpoint_dir=ckpt)
    (ckpt / "iter-000004" / MANIFEST).unlink()
    with caplog.at_level(logging.INFO, logger="components.rl.trainer"):
        _, result = run(policy, 4, checkpoint_dir=ckpt, resume=True)
    assert result.resumed_from == 2 and "falling back" in caplog.text
