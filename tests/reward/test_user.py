"""The user's own reward functions (reward.functions): checked at config load, imported by every scoring
worker, combined by weight, bounded by reward.timeout_s, and a bad result is a counted 0, never a crash."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from components.config import ConfigError, load_config
from components.model.factory import initial_policy
from components.reward.pool import ScoringPool, pool_for
from components.rl.rewards import score_batch
from tests.support.rl import TINY, run_trainer

CHAIN_SUM = "reasoning_gym/chain_sum"  # scored inline by the built-in verifier: a user function must not be

REWARDS = '''
import math, os, time

def quarter(data_source, solution_str, ground_truth, extra_info):
    return 0.25

def worker_pid(data_source, solution_str, ground_truth, extra_info):
    return os.getpid()

def exact(data_source, solution_str, ground_truth, extra_info):
    return float(solution_str == ground_truth) + (extra_info or {}).get("bonus", 0.0)

def verl_dict(data_source, solution_str, ground_truth, extra_info):
    return {"score": 0.75, "acc": True}

def boom(data_source, solution_str, ground_truth, extra_info):
    raise RuntimeError("a bug in the user's reward")

def text(data_source, solution_str, ground_truth, extra_info):
    return "x"

def nan(data_source, solution_str, ground_truth, extra_info):
    return math.nan

def inf(data_source, solution_str, ground_truth, extra_info):
    return math.inf

def nothing(data_source, solution_str, ground_truth, extra_info):
    return None

def hang(data_source, solution_str, ground_truth, extra_info):
    if solution_str == "hang":
        while True:
            time.sleep(60)
    return 0.25

NOT_A_FUNCTION = 3.5
'''


@pytest.fixture(scope="module")
def rewards_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def reward_cfg(rewards_file, *entries: str, extra: tuple[str, ...] = ()):
    """params.yaml's reward section with reward.functions = entries ("name" or "name@weight")."""
    items = []
    for entry in entries:
        name, _, weight = entry.partition("@")
        items.append(f'{{path: "{rewards_file}:{name}", weight: {weight or 1.0}}}')
    return load_config(overrides=[f"reward.functions=[{', '.join(items)}]", *extra]).reward


def test_a_user_function_scores_every_item_in_a_worker(rewards_file):
    cfg = reward_cfg(rewards_file, "quarter")
    with pool_for(cfg) as pool:
        assert pool.score([CHAIN_SUM] * 3, ["\\boxed{7}", "no box", "\\boxed{8}"], ["7", "7", "7"]) == [0.25] * 3
    with pool_for(reward_cfg(rewards_file, "worker_pid")) as pool:
        pids = pool.score([CHAIN_SUM, "any/source"], ["a", "b"], ["1", "2"])
        assert {int(p) for p in pids} <= set(pool.pids) and os.getpid() not in pids  # isolated, not inline


def test_functions_combine_by_weight_with_verls_arguments(rewards_file):
    cfg = reward_cfg(rewards_file, "quarter@2.0", "exact@0.5", "verl_dict@-1.0")
    with pool_for(cfg) as pool:
        scores = pool.score([CHAIN_SUM] * 3, ["7", "8", "7"], ["7", "7", "7"], [None, None, {"bonus": 2.0}])
        assert pool.errors == 0
    # 2 * 0.25 + 0.5 * exact - 0.75, exact = (solution == truth) + extra_info's bonus
    assert scores == [0.25, -0.25, 1.25]


@pytest.mark.parametrize("bad", ["boom", "text", "nan", "inf", "nothing"])
def test_a_function_that_raises_or_gives_no_finite_number_adds_zero_and_is_counted(rewards_file, bad):
    with pool_for(reward_cfg(rewards_file, bad, "quarter@2.0")) as pool:
        assert pool.score([CHAIN_SUM] * 2, ["7", "8"], ["7", "7"]) == [0.5, 0.5]  # the good term still counts
        assert pool.counters() == {"timeouts": 0, "crashes": 0, "errors": 2}


def test_a_hanging_function_times_out_and_the_batch_goes_on(rewards_file):
    with ScoringPool(1, 1.0, reward_functions=[(f"{rewards_file}:hang", 1.0)]) as pool:
        assert pool.score([CHAIN_SUM] * 3, ["a", "hang", "b"], ["1"] * 3) == [0.25, 0.0, 0.25]
        assert pool.counters() == {"timeouts": 1, "crashes": 0, "errors": 0}


def test_the_format_term_still_applies_to_a_user_reward(rewards_file):
    cfg = reward_cfg(rewards_file, "quarter", extra=("reward.format_weight=0.5",))
    batch = SimpleNamespace(texts=["so \\boxed{7}", "\\boxed{7} and \\boxed{8}"])
    with pool_for(cfg) as pool:
        assert score_batch(batch, [CHAIN_SUM] * 2, ["7", "7"], pool, cfg).tolist() == [0.75, 0.25]


def test_the_example_reward_loads_relative_to_the_project_and_scores_chain_sum():
    cfg = load_config(overrides=['reward.functions=["rewards/example.py:compute_score"]']).reward
    assert os.path.isabs(cfg.functions[0].path.rpartition(":")[0])  # what the workers import
    with pool_for(cfg) as pool:
        assert pool.score([CHAIN_SUM] * 3, ["\\boxed{12}", "\\boxed{13}", "12"], ["12"] * 3) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("entry, why", [
    ("{dir}/missing.py:score", "no such file"),
    ("{file}:no_such_function", "has no attribute 'no_such_function'"),
    ("{file}:NOT_A_FUNCTION", "is a float, not a function"),
    ("{dir}/broken.py:score", "importing {dir}/broken.py raised ZeroDivisionError"),
    ("{dir}/notes.txt:score", "is not a .py file"),
    ("../outside.py:score", "is outside the project"),
    ("no_such_package.rewards:score", "raised ModuleNotFoundError"),
])
def test_a_reward_function_that_cannot_be_loaded_fails_at_config_load_naming_it(rewards_file, entry, why):
    folder = rewards_file.parent
    (folder / "broken.py").write_text("1 / 0\n")
    (folder / "notes.txt").write_text("")
    entry = entry.format(dir=folder, file=rewards_file)
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f'reward.functions=["{entry}"]'])
    message = str(err.value)
    assert message.startswith(f"reward.functions[0] ({entry!r}): ") and "\n" not in message
    assert why.format(dir=folder) in message


@pytest.fixture(scope="module")
def policy():
    return initial_policy(load_config(overrides=TINY).model, seed=0)


def test_rl_rewards_come_from_the_users_function(policy, rewards_file):
    _, result = run_trainer(policy, [f'reward.functions=["{rewards_file}:quarter"]'], iterations=2)
    assert [h["reward/mean"] for h in result.history] == [0.25, 0.25]
    assert result.history[-1]["reward/scoring_errors"] == 0.0


def test_rl_counts_a_raising_user_function_as_scoring_errors(policy, rewards_file):
    _, result = run_trainer(policy, [f'reward.functions=["{rewards_file}:boom"]'], iterations=1)
    completions = 8 * 4  # TINY: rl.prompts_per_iteration * rl.num_generations
    assert result.history[-1]["reward/mean"] == 0.0
    assert result.history[-1]["reward/scoring_errors"] == completions
