"""The matched-time control of `make compare`: continued SFT that stops at its wall-time budget."""

import math

import pandas as pd
import torch
from accelerate import Accelerator

from components.config import load_config
from components.model.factory import initial_policy
from components.sft.control import continue_sft_for


def test_control_trains_until_its_budget_is_spent_and_reports_the_steps_it_took(monkeypatch):
    """Each optimizer step costs 0.5 s of a fake clock: a 2.0 s budget buys the steps that start at
    0, 0.5, 1.0 and 1.5 s (two passes over two batches), with the lr annealed on a cosine over the budget."""
    import components.sft.control as control

    now = [100.0]
    lrs = []

    class TimedStep(control.SFTStep):
        def __call__(self, batch):
            assert len(lrs) < 20, "the control kept training past its budget"
            lrs.append(self.optimizer.param_groups[0]["lr"])
            out = super().__call__(batch)
            now[0] += 0.5
            return out

    monkeypatch.setattr(control, "SFTStep", TimedStep)
    cfg = load_config(overrides=["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1",
                                 "model.tiny.intermediate_size=64", "sft.batch_size=8"])
    model, tok = initial_policy(cfg.model, 0)
    before = [p.detach().clone() for p in model.parameters()]
    data = pd.DataFrame({"prompt": ["1+2=", "3+4="] * 8, "solution": ["\\boxed{3}", "\\boxed{7}"] * 8})
    model, steps = continue_sft_for(model, tok, data, cfg.sft, seconds=2.0, seed=0, lr=1e-3,
                                    accelerator=Accelerator(cpu=True), chat_template="auto", chunk_tokens=1024,
                                    clock=lambda: now[0])
    assert steps == len(lrs) == 4
    assert lrs == [1e-3 * 0.5 * (1 + math.cos(math.pi * t / 2.0)) for t in (0.0, 0.5, 1.0, 1.5)]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it trained
