"""Reward extraction and scoring, on hand-checked cases."""

import threading
import time

import pytest

from components.rewards import compute_score, extract_boxed, is_verifiable, trl_reward_func

RG = "reasoning_gym/chain_sum"


@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{42}", "42"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
    (r"\boxed{{a}{b{c}}}", "{a}{b{c}}"),
    (r"first \boxed{1} then \boxed{2}", "2"),  # last box wins
    (r"\boxed {7}", "7"),  # space before the brace
    (r"\fbox{5}", "5"),
    (r"\boxed{1} and \fbox{3}", "3"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not count
    (r"\boxed{}", ""),
    ("no box here", None),
    (r"\boxed{12", None),  # truncated inside the box
    (r"\boxed{1} \boxed{2", None),  # the last box is unbalanced
    (r"\boxed 5", None),
    ("", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_boxed_is_linear():
    text = "\\boxed{" + "{" * 200_000 + "}" * 200_000 + "}"
    start = time.perf_counter()
    assert extract_boxed(text) == "{" * 200_000 + "}" * 200_000
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("completion, truth, expected", [
    (r"\boxed{85}", "85", 1.0),
    (r"\boxed{ 8 5 }", "85", 1.0),  # spaces stripped
    (r"47+38=\boxed{85}", "85", 1.0),
    (r"\boxed{-4}", "-4", 1.0),
    (r"\boxed{4}", "-4", 0.0),
    (r"\boxed{855}", "85", 0.0),  # reasoning-gym would give partial credit; rewards are binary
    (r"\boxed{85.0}", "85", 1.0),  # chain_sum's own rule: trailing decimals are fine
    (r"\boxed{085}", "85", 1.0),
    (r"\boxed{84} \boxed{85}", "85", 1.0),
    (r"\boxed{85} \boxed{84}", "85", 0.0),
    ("85", "85", 0.0),  # no box, no reward
    (r"\boxed{85", "85", 0.0),
    (r"\boxed{}", "85", 0.0),
    (r"\boxed{abc}", "85", 0.0),
])
def test_reasoning_gym_score(completion, truth, expected):
    assert compute_score(RG, completion, truth) == expected


@pytest.mark.parametrize("completion, truth, expected", [
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{\dfrac12}", r"\frac{1}{2}", 1.0),
    (r"\boxed{1/2}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", 0.0),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", 1.0),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"(3,\frac{\pi}{2})", 1.0),
    (r"\boxed{70}", "70", 1.0),
    (r"\boxed{71}", "70", 0.0),
    (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", 1.0),
    ("the answer is 70", "70", 0.0),
    (r"\boxed{10^{10^{10}}}", "5", 0.0),  # would hang sympy: rejected before parsing
    (r"\boxed{99999999999!}", "5", 0.0),
])
def test_math_score(completion, truth, expected):
    assert compute_score("HuggingFaceH4/MATH-500", completion, truth) == expected


def test_math_score_works_outside_the_main_thread():
    out = []
    worker = threading.Thread(target=lambda: out.append(compute_score("math", r"\boxed{0.5}", r"\frac12")))
    worker.start()
    worker.join()
    assert out == [1.0]


def test_is_verifiable():
    assert is_verifiable(RG, "85") and is_verifiable(RG, "-4")
    assert not is_verifiable(RG, "eighty") and not is_verifiable(RG, None) and not is_verifiable(RG, " ")
    assert is_verifiable("math", r"\frac{14}{3}") and is_verifiable("math", r"\text{Evelyn}")
    assert not is_verifiable("math", "")


def test_trl_adapter_accepts_strings_and_messages():
    completions = [r"\boxed{3}", [{"role": "assistant", "content": r"\boxed{3}"}], r"\boxed{4}"]
    scores = trl_reward_func(completions, ground_truth=["3", "3", "3"], data_source=[RG] * 3, prompts=["x"] * 3)
    assert scores == [1.0, 1.0, 0.0]
    assert trl_reward_func([r"\boxed{\frac{1}{2}}"], ground_truth=["0.5"]) == [1.0]


def test_reasoning_gym_scoring_is_fast():
    # One RL iteration scores ~256 completions; that must cost well under a few ms.
    completions = [f"{i}+{i}=\\boxed{{{2 * i + (i % 3 == 0)}}}" for i in range(256)]
    truths = [str(2 * i) for i in range(256)]
    start = time.perf_counter()
    scores = [compute_score(RG, c, t) for c, t in zip(completions, truths)]
    elapsed = time.perf_counter() - start
    print(f"256 reasoning-gym scores in {elapsed * 1e3:.2f} ms")
    assert sum(scores) == sum(i % 3 != 0 for i in range(256))
    assert elapsed < 0.05
