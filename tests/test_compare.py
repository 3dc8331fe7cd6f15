"""The comparison report and the matched-time control."""

import pandas as pd
from accelerate import Accelerator

from components.compare import summarize
from components.config import load_config
from components.control import continue_sft_for
from components.model.factory import initial_policy


def test_summary_table_reports_mean_std_and_gain_over_sft():
    rows = [
        {"seed": 0, "model": "sft", "pass@1": 0.40, "mean@4": 0.30, "seconds": 10.0},
        {"seed": 1, "model": "sft", "pass@1": 0.50, "mean@4": 0.40, "seconds": 12.0},
        {"seed": 0, "model": "grpo", "pass@1": 0.60, "mean@4": 0.50, "seconds": 20.0},
        {"seed": 1, "model": "grpo", "pass@1": 0.80, "mean@4": 0.70, "seconds": 22.0},
    ]
    table = summarize(rows, k=4)
    # grpo pass@1: mean 0.7, sample std 0.1414; gains 0.2 and 0.3 -> 0.25 ± 0.0707
    assert "| grpo | 0.700 ± 0.141 | 0.600 ± 0.141 | 0.250 ± 0.071 | 21.000 ± 1.414 |" in table
    assert "| sft | 0.450 ± 0.071 |" in table


class FakeClock:
    """time.time() that advances 0.25 s per call, so the budget is counted in calls, not real time."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        self.now += 0.25
        return self.now


def test_control_stops_at_its_wall_time_budget(monkeypatch):
    import components.control as control

    monkeypatch.setattr(control, "time", FakeClock())
    cfg = load_config(overrides=["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1",
                                 "model.tiny.intermediate_size=64", "sft.batch_size=8"])
    model, tok = initial_policy(cfg.model, 0)
    data = pd.DataFrame({"prompt": ["1+2=", "3+4="] * 8, "solution": ["\\boxed{3}", "\\boxed{7}"] * 8})
    # clock: start 0.25, then one reading per step at 0.5, 0.75, ...; 2.0 s of budget is spent at 2.25
    _, steps = continue_sft_for(model, tok, data, cfg.sft, seconds=2.0, seed=0, lr=1e-3,
                                accelerator=Accelerator(cpu=True))
    assert steps == 7
