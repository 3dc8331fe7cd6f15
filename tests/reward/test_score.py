"""Reward extraction and scoring, on hand-checked cases."""

import threading
import time

import pytest

from components.reward.adapters import trl_reward_func
from components.reward.extract import extract_boxed
from components.reward.score import compute_score, is_verifiable

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
    (r"\boxed{ 85 }", "85", 1.0),  # surrounding spaces are fine
    (r"\boxed{ 8 5 }", "85", 0.0),  # inner spaces are not: reasoning-gym's own scorer says 0
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
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", 0.0),  # unreduced: tests/reward/test_verify_real_completions.py
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


# --- ground truths as verl and TRL pass them -----------------------------------------------------

def test_ground_truth_forms():
    import numpy as np

    solution = r"First $x = 2$, so $\boxed{2}$ is wrong; in fact $\boxed{\left( 3, \frac{\pi}{2} \right)}$."
    pred = r"\boxed{(3, \frac{\pi}{2})}"
    assert compute_score("math", pred, np.array([solution], dtype=object)) == 1.0  # verl parquet: an array
    assert compute_score("math", pred, solution) == 1.0  # a worked solution: its last box is the answer
    assert compute_score("math", r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}",
                         np.array([r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"], dtype=object)) == 1.0
    assert compute_score("math", r"\boxed{7}", ["6", "7"]) == 1.0  # any acceptable answer
    assert compute_score("math", r"\boxed{27}", 27) == 1.0
    assert compute_score(RG, r"\boxed{85}", np.array(["85"], dtype=object)) == 1.0
    for missing in (None, float("nan"), [], "", "  "):
        assert compute_score("math", r"\boxed{5}", missing) == 0.0


def test_odd_completion_types_score_without_raising():
    assert compute_score("math", None, "5") == 0.0
    assert compute_score("math", b"\\boxed{5}", "5") == 1.0
    assert compute_score("math", b"\xff\\boxed{5}", "5") == 1.0


# --- math-verify corrections -----------------------------------------------------------------------

@pytest.mark.parametrize("pred, truth, expected", [
    ("5x - 7y + 11z + 4 = 0", "0", 0.0),  # math-verify alone compares the right-hand side: 0 == 0
    ("2 + 2 = 5", "5", 0.0),
    ("x = 5", "5", 1.0),  # naming the unknown is fine
    ("f(2) = 5", "5", 1.0),
    ("5", "x = 5", 1.0),
    ("2x + 3 = y", "y = 2x + 3", 1.0),
    ("5x - 7y + 11z + 4 = 0", "5x - 7y + 11z + 4 = 0", 1.0),
    ("x + 5", "5", 0.0),  # a variable the reference does not have
    ("(x+1)(x-1)", "x^2 - 1", 1.0),
    (r"\frac{(2n)!}{(n!)^2}", r"\binom{2n}{n}", 1.0),
])
def test_equations_and_variables(pred, truth, expected):
    assert compute_score("math", f"\\boxed{{{pred}}}", truth) == expected


@pytest.mark.parametrize("answer", [
    "x^8 + x^7 + x^6 + x^5 + x^4 + x^3 + x^2 + x + 1",  # MATH-500 #439: sibling powers are not a tower
    r"10,\!080",  # \! is a thin space, not a factorial
    r"\frac{(2n)!}{(n!)^2}",
    "2^{2010} - 1",
    "(x+1)^{12}",
    r"\left( \frac{\sqrt{3}}{2}, \frac{1}{2} \right)",
    r"\binom{10}{3}",
    "5!",
    r"|x - 1| + |x + 1|",
])
def test_pre_filter_lets_ordinary_answers_through(answer):
    assert is_verifiable("math", answer)


# --- reasoning-gym -------------------------------------------------------------------------------------

CHAIN_SUM_PREDS = ["85", " 85 ", "85.0", "085", "+85", "+0,085.000", "8,5", "8 5", "85.", "0085e0", "8.5e1", "85\x00",
                   "eighty-five", "85/1", "NaN", "sNaN", "Infinity", "-85", "--85", "85..0", "1_0", "\u0668\u0665", ""]


@pytest.mark.parametrize("truth", ["85", "-4", "0", "1000"])
def test_chain_sum_fast_path_agrees_with_reasoning_gym(truth):
    import reasoning_gym

    scorer = reasoning_gym.create_dataset("chain_sum", size=1, seed=0)
    for pred in CHAIN_SUM_PREDS + [truth, f" {truth}", f"{truth}.00", f"0{truth}", "1,000", "10,00", "-0", "-4.0"]:
        theirs = scorer.score_answer(pred, {"answer": truth}) >= 1.0
        ours = compute_score(RG, f"\\boxed{{{pred}}}", truth) == 1.0
        assert ours == theirs, (pred, truth, ours, theirs)


def test_other_reasoning_gym_tasks_keep_their_whitespace():
    # Stripping every space made "o l l e h" match "olleh"; the task's own scorer gives it 0.4.
    assert compute_score("reasoning_gym/spell_backward", r"\boxed{olleh}", "olleh") == 1.0
    assert compute_score("reasoning_gym/spell_backward", r"\boxed{ olleh }", "olleh") == 1.0
    assert compute_score("reasoning_gym/spell_backward", r"\boxed{o l l e h}", "olleh") == 0.0
    assert compute_score("reasoning_gym/basic_arithmetic", r"\boxed{- 12}", "-12") == 0.0


def test_register_scorer_refuses_to_shadow_reasoning_gym():
    from components.reward.score import register_scorer

    with pytest.raises(ValueError):
        register_scorer(RG, lambda *a: 1.0)
    with pytest.raises(ValueError):
        register_scorer("", lambda *a: 1.0)


# --- format reward -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (r"47+38 = 85, so the answer is \boxed{85}", 1.0),
    (r"The answer is $\boxed{85}$.", 1.0),
    ("Therefore\n\\[\\boxed{\\frac{1}{2}}\\]\n", 1.0),
    (r"**Answer:** $\boxed{85}$**", 1.0),
    (r"\fbox{85}", 1.0),
    (r"\boxed{84} no wait \boxed{85}", 0.0),  # more than one box
    (r"\boxed{85} because 47+38 = 85", 0.0),  # not final
    (r"\boxed{85} I hope it is correct.", 0.0),
    (r"\boxed{}", 0.0),  # empty
    (r"\boxed{ }", 0.0),
    (r"\boxed{85", 0.0),  # truncated
    (r"\boxed 85", 0.0),
    ("85", 0.0),
    ("", 0.0),
])
def test_format_score(text, expected):
    from components.reward.score import format_score

    assert format_score(text) == expected


def test_shaped_reward_weights():
    from components.reward.adapters import compute_shaped_score, trl_format_reward_func
    from components.reward.score import shaped_reward

    good, messy = r"so \boxed{85}", r"\boxed{85} (or maybe \boxed{86}?) \boxed{85} done"
    assert shaped_reward(1.0, good) == 1.0  # defaults: the plain verifiable reward
    assert shaped_reward(1.0, good, correct_weight=1.0, format_weight=0.2) == pytest.approx(1.2)
    assert shaped_reward(0.0, good, format_weight=0.2) == pytest.approx(0.2)
    assert shaped_reward(1.0, messy, format_weight=0.2) == 1.0
    assert shaped_reward(1.0, good, correct_weight=0.5, format_weight=0.5) == pytest.approx(1.0)
    assert compute_shaped_score(RG, good, "85", None, format_weight=0.1) == pytest.approx(1.1)
    assert compute_shaped_score(RG, messy, "85", None, format_weight=0.1) == 1.0
    assert trl_format_reward_func([good, [{"role": "assistant", "content": messy}]]) == [1.0, 0.0]
