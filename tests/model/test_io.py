"""The tiny model: size, and a save/load round trip as an HF folder."""

import torch

from components.config import load_config
from components.model.factory import count_parameters, initial_policy, load_policy
from components.model.io import save_policy


def test_tiny_model_is_small_and_saves_as_hf_folder(tmp_path):
    cfg = load_config()
    model, tok = initial_policy(cfg.model, seed=0)
    assert count_parameters(model) < 5_000_000
    save_policy(model, tok, tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    again, tok2 = load_policy(tmp_path)
    assert tok2("3+4=")["input_ids"] == tok("3+4=")["input_ids"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
