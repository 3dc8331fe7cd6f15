"""The matched-time control of `make compare`: continued SFT that stops at its wall-time budget."""

import pandas as pd
from accelerate import Accelerator

from components.config import load_config
from components.model.factory import initial_policy
from components.sft.control import continue_sft_for


class FakeClock:
    """time.time() that advances 0.25 s per call, so the budget is counted in calls, not real time."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        self.now += 0.25
        return self.now


def test_control_stops_at_its_wall_time_budget(monkeypatch):
    import components.sft.control as control

    monkeypatch.setattr(control, "time", FakeClock())
    cfg = load_config(overrides=["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1",
                                 "model.tiny.intermediate_size=64", "sft.batch_size=8"])
    model, tok = initial_policy(cfg.model, 0)
    data = pd.DataFrame({"prompt": ["1+2=", "3+4="] * 8, "solution": ["\\boxed{3}", "\\boxed{7}"] * 8})
    # clock: start 0.25, then one reading per step at 0.5, 0.75, ...; 2.0 s of budget is spent at 2.25
    _, steps = continue_sft_for(model, tok, data, cfg.sft, seconds=2.0, seed=0, lr=1e-3,
                                accelerator=Accelerator(cpu=True), chat_template="auto", chunk_tokens=1024)
    assert steps == 7
