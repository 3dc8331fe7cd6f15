"""Progress lines (components/infra/progress.py): windowed s/it, ETA, elapsed, a line first, last and
every interval; and the lines a real RL run writes (the run summary, then i/N with ETA and metrics)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from components.config import load_config
from components.infra.progress import ProgressReporter, format_duration
from components.model.factory import initial_policy
from components.rl.metrics import progress_fields
from tests.support.rl import TINY, parity_rewards_on_one_thread, run_trainer


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Lines(list):
    """A logger stand-in that keeps the formatted lines."""

    def info(self, fmt: str, *args) -> None:
        self.append(fmt % args)


def reporter(total: int = 20, **kwargs) -> tuple[ProgressReporter, Clock, Lines]:
    clock, lines = Clock(), Lines()
    return ProgressReporter("rl iter", total, clock=clock, logger=lines, **kwargs), clock, lines


def run_steps(rep: ProgressReporter, clock: Clock, seconds: list[float], first: int = 1) -> list[bool]:
    written = []
    for i, s in enumerate(seconds):
        clock.now += s
        written.append(rep.update(first + i, {"reward": "0.500"}))
    return written


def test_mean_is_over_the_window_and_eta_is_mean_times_steps_left():
    rep, clock, lines = reporter(total=20, window=3, interval_s=10.0)
    # steps 1-3 take 2 s, steps 4-5 take 5 s: the window (steps 3-5) holds 2 + 5 + 5 = 12 s over 3 steps
    assert run_steps(rep, clock, [2, 2, 2, 5, 5]) == [True, False, False, False, True]
    assert rep.seconds_per_step() == pytest.approx(4.0)
    # 16 s since the start, 15 steps left at 4 s each
    assert lines[-1] == "rl iter 5/20  4 s/it  elapsed 16s  ETA 1m00s  reward 0.500"
    assert lines[0] == "rl iter 1/20  2 s/it  elapsed 2.0s  ETA 38s  reward 0.500"


def test_a_line_every_interval_and_always_the_last():
    rep, clock, lines = reporter(total=10, interval_s=10.0)
    written = run_steps(rep, clock, [3] * 10)
    # the first; then 12 s, 12 s, 12 s after the previous line (t = 3, 15, 27); then the last (t = 30)
    assert [i + 1 for i, w in enumerate(written) if w] == [1, 5, 9, 10]
    assert lines[-1].startswith("rl iter 10/10  3 s/it  elapsed 30s  ETA 0s  ")


def test_every_n_steps_adds_lines_and_a_long_run_stays_sparse():
    rep, clock, _ = reporter(total=1000, interval_s=10.0, every=250)
    written = run_steps(rep, clock, [0.01] * 1000)  # 10 s in all: the time rule alone gives first and last
    assert [i + 1 for i, w in enumerate(written) if w] == [1, 250, 500, 750, 1000]


def test_a_resumed_run_counts_from_its_first_iteration():
    rep, clock, lines = reporter(total=20, start=15)
    run_steps(rep, clock, [2.0], first=16)
    assert lines == ["rl iter 16/20  2 s/it  elapsed 2.0s  ETA 8.0s  reward 0.500"]


def test_durations_read_as_seconds_minutes_hours():
    assert [format_duration(s) for s in (0, 0.47, 9.9, 10, 59.4, 60, 185, 3600, 7620)] == [
        "0.0s", "0.5s", "9.9s", "10s", "59s", "1m00s", "3m05s", "1h00m", "2h07m"]


def test_disabled_reporter_writes_nothing():
    rep, clock, lines = reporter(total=2, enabled=False)
    run_steps(rep, clock, [1, 1])
    assert lines == []


def test_rl_line_shows_reward_entropy_and_pipo_state():
    base = {"reward/mean": 0.25, "completions/mean_length": 11.5, "rollout/entropy_estimate": 7.6}
    assert progress_fields({**base, "actor/entropy": 7.4, "pipo/active": 1.0, "pipo/xi": -0.5,
                            "pipo/probe_accuracy": 0.75}) == {
        "reward": "0.250", "probe_acc": "0.750", "len": "11.5", "entropy": "7.400", "pipo": "active xi -0.500"}
    assert progress_fields({**base, "pipo/active": 0.0})["pipo"] == "inactive (window filling)"
    assert "pipo" not in progress_fields(base)


@pytest.fixture
def parity_rewards(monkeypatch):
    yield from parity_rewards_on_one_thread(monkeypatch)


def test_a_short_rl_run_logs_its_settings_then_progress_lines(parity_rewards, caplog):
    policy = initial_policy(load_config(overrides=TINY).model, seed=0)
    with caplog.at_level(logging.INFO, logger="components.rl.trainer"):
        run_trainer(policy, ["rl.pipo.enabled=true", "rl.pipo.neg_scale=0.2"], iterations=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "components.rl.trainer"]
    assert lines[0] == ("rl: grpo, 3 iterations, 8 prompts x 4 samples; PIPO on (window 2, neg_scale 0.2, "
                        "min_history 2, signal window, pi_steps one, pi_clip_mode standard, pi_lr_scale 1.0)")
    progress = [line for line in lines if line.startswith("rl iter")]
    # a 3-iteration run takes well under the 10 s interval: the first and the last line
    assert [line.split()[2] for line in progress] == ["1/3", "3/3"]
    for line in progress:
        assert " s/it  elapsed " in line and "  ETA " in line and "  reward " in line and "nan" not in line
    assert "pipo inactive (window filling)" in progress[0]
    assert "pipo active xi " in progress[1] and progress[1].split("ETA ")[1].startswith("0s")


class AnswersThree:
    """An engine stand-in: every completion is \\boxed{3}, two tokens long."""

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, greedy=False, generator=None):
        return SimpleNamespace(texts=["\\boxed{3}"] * len(prompts),
                               completion_mask=torch.ones(len(prompts), 2, dtype=torch.long))


def test_evaluation_states_its_work_then_counts_completions(caplog):
    from components.eval.run import evaluate_policy
    from components.reward.pool import pool_for

    cfg = load_config(overrides=["eval.num_samples=2", "eval.batch_size=4", "reward.workers=0"])
    data = pd.DataFrame({"id": list("abcde"), "source": ["reasoning_gym/chain_sum"] * 5, "prompt": ["1+2="] * 5,
                         "answer": ["3"] * 5})
    with pool_for(cfg.reward) as scorer, caplog.at_level(logging.INFO, logger="components.eval.run"):
        evaluate_policy(AnswersThree(), data, cfg.eval, 0, "rl/sums", scorer=scorer, rendered=["1+2="] * 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "components.eval.run"]
    assert lines[0] == "eval rl/sums: 5 problems x (1 greedy + 2 samples) = 15 completions"
    # first batch (4 greedy completions) and the last; the run is far shorter than the interval
    assert lines[1].startswith("eval rl/sums 4/15  ") and lines[1].endswith("phase greedy  problems 4/5")
    assert lines[2].startswith("eval rl/sums 15/15  ") and " s/completion  " in lines[2]
    assert lines[2].endswith("ETA 0s  phase 2 samples each  problems 5/5")
    assert lines[3].startswith("eval rl/sums") and "pass@1 1.000" in lines[3]


def test_sft_states_its_steps_then_logs_progress(caplog):
    from accelerate import Accelerator

    from components.sft.train import train_sft

    cfg = load_config(overrides=TINY + ["sft.epochs=2", "sft.batch_size=4"])
    model, tok = initial_policy(cfg.model, seed=0)
    data = pd.DataFrame({"prompt": ["1+2="] * 6, "solution": ["1+2=3 \\boxed{3}"] * 6})
    with caplog.at_level(logging.INFO, logger="components.sft.train"):
        train_sft(model, tok, data, cfg.sft, cfg.model.lora, 0, Accelerator(cpu=True), chat_template="none",
                  chunk_tokens=cfg.model.lm_head_chunk_tokens)
    lines = [r.getMessage() for r in caplog.records if r.name == "components.sft.train"]
    assert lines[0].startswith("sft: 2 epochs x 2 steps = 4 steps (batch 4, ")
    steps = [line for line in lines if line.startswith("sft step")]
    assert [line.split()[2] for line in steps] == ["1/4", "4/4"]
    assert "  epoch 1/2  loss " in steps[0] and "  epoch 2/2  loss " in steps[1] and " s/it  elapsed " in steps[1]
