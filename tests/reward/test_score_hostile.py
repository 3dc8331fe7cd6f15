"""Hostile completions: junk, towers, deep nests and broken text must score fast, bounded and safely.

Each case scores 0.0 (or the right answer where one is present), in-process (the verifier a scoring
worker runs, components.reward.verify) within 2 s and through the scoring pool without a timeout,
allocates well under 200 MB, and never crashes.

The 2 s bound used to fail now and then at a load average of about 6: the cases just inside the
pre-filter's limits spent 0.3-1.1 s (idle) in the LaTeX parser's full-context LL prediction, which
ANTLR does not cache across inputs (a 90-element set 0.8-1.1 s, five nested parentheses 0.3-0.8 s),
so a 3x slowdown under load crossed 2 s. The parser now predicts with SLL first
(components/reward/latex_parse.py): 1-70 ms for the same cases; test_no_full_context_prediction
checks the cause, not the time.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest

from components.reward.pool import ScoringPool
from components.reward.score import shaped_reward
from components.reward.verify import score_and_error, warm_up

MATH = "HuggingFaceH4/MATH-500"
CHAIN_SUM = "reasoning_gym/chain_sum"
MAX_SECONDS = 2.0
MAX_PEAK_BYTES = 200 * 2**20


def _box(inner: str) -> str:
    return "\\boxed{" + inner + "}"


def _nest(open_: str, close: str, depth: int, core: str = "2") -> str:
    return open_ * depth + core + close * depth


# name -> (completion, ground truth, expected reward). Cases marked "found" (by hand) or "fuzzed"
# (random expressions through the pool) hung or took seconds in sympy or the LaTeX parser before
# the pre-filter learned about them.
CASES: dict[str, tuple[str, str, float]] = {
    "1 MB of junk": ("x" * 2**20, "5", 0.0),
    "1 MB of junk, then the right answer": ("x" * 2**20 + " so " + _box("5"), "5", 1.0),
    "1 MB of junk, then a wrong answer": ("x" * 2**20 + _box("6"), "5", 0.0),
    "1 MB inside the box": (_box("1+" * 2**19 + "1"), "5", 0.0),
    "10,000 nested braces": (_box(_nest("{", "}", 10_000)), "5", 0.0),
    "10,000 open braces": (_box("{" * 10_000), "5", 0.0),
    "9^9^9^9": ("9^9^9^9", "5", 0.0),
    "9^9^9^9 boxed": (_box("9^9^9^9"), "5", 0.0),
    "9^{9^{9^{9}}} boxed": (_box("9^{9^{9^{9}}}"), "5", 0.0),
    "9^(9^9) (found)": (_box("9^(9^9)"), "5", 0.0),
    "(9^9)^(9^9) (found)": (_box("(9^9)^(9^9)"), "5", 0.0),
    "(9^{9999})^{9999} (found)": (_box("(9^{9999})^{9999}"), "5", 0.0),
    "99^{9999\\cdot 99} (fuzzed)": (_box("\\sqrt{99^{9999\\cdot 99}}"), "5", 0.0),
    "9^{99}^{99} double superscript": (_box("9^{99}^{99}"), "5", 0.0),
    "10^{10^{10}}": (_box("10^{10^{10}}"), "5", 0.0),
    "1e999999": (_box("1e999999"), "5", 0.0),
    "gigantic integer": ("9" * 100_000, "5", 0.0),
    "gigantic integer boxed": (_box("9" * 100_000), "5", 0.0),
    "gigantic integer vs an equal truth": (_box("9" * 100_000), "9" * 100_000, 0.0),  # over-long: never scored
    "9!!!! (found)": (_box("9!!!!"), "5", 0.0),
    "(9!)! (found)": (_box("(9!)!"), "5", 0.0),
    "99999999999!": (_box("99999999999!"), "5", 0.0),
    "(999!)^{999} (found)": (_box("(999!)^{999}"), "5", 0.0),
    "huge binomial (found)": (_box("\\binom{999999999}{499999999}"), "5", 0.0),
    "huge Gamma (found)": (_box("\\Gamma(99999999)"), "5", 0.0),
    "huge product (found)": (_box("\\prod_{i=1}^{9999} i^{999}"), "5", 0.0),
    "\\binom{99}{\\pi} (fuzzed)": (_box("\\binom{99}{\\pi}"), "5", 0.0),
    "\\binom{y}{999} (fuzzed)": (_box("\\sqrt{\\binom{y}{999}}"), "x^2+y^2", 0.0),
    "\\binom{9999}{e} (fuzzed)": (_box("\\binom{9999}{e}"), "\\sqrt{2}", 0.0),
    "\\binom{e}{99} (fuzzed)": (_box("\\sqrt{|\\binom{e}{99}|}"), "(1,2)", 0.0),
    "\\binom{99}{x} (fuzzed)": (_box("\\binom{99}{x}"), "x+1", 0.0),
    "999! over a tangent (fuzzed)": (_box("\\frac{999!}{\\tan(\\sqrt{12})}"), "\\sqrt{2}", 0.0),
    "29 digits over a logarithm (fuzzed)": (_box("\\frac{" + "9" * 29 + "}{\\log(2)}"), "\\sqrt{2}", 0.0),
    "9^{999} over a tangent (fuzzed)": (_box("\\frac{9^{999}}{\\tan(2)}"), "\\sqrt{2}", 0.0),
    "(99-\\tan(\\tan(9999)))^{99} (fuzzed)": (_box("(99-\\tan(\\tan(9999)))^{99}"), "\\sqrt{2}", 0.0),
    "\\exp(9999) (fuzzed)": (_box("\\frac{99}{\\frac{\\exp(9999)}{\\binom{x}{x}}}"), "x+1", 0.0),
    "\\tan(999) over a binomial (fuzzed)": (_box("\\frac{\\tan(999)-\\log(7)}{\\binom{999}{7}}"), "\\frac12", 0.0),
    "\\cos(\\sqrt{(12)^{99}}) (fuzzed)": (_box("\\cos(\\sqrt{(12)^{99}})"), "5", 0.0),
    "|\\log(12)|99! (fuzzed)": (_box("|\\log(12)|99!"), "\\sqrt{2}", 0.0),
    "a binomial in an exponent (fuzzed)": (_box("\\sqrt{|99^{\\binom{999}{2}}|1||}"), "5", 0.0),
    "a symbolic binomial in an exponent (fuzzed)": (_box("(9999^{\\binom{x}{9}})^{9}"), "x+1", 0.0),
    "\\sqrt{999!-7} (fuzzed)": (_box("\\sqrt{999!-7}"), "\\frac{1}{2}", 0.0),
    "\\sqrt{9^{9999}-7} (found)": (_box("\\sqrt{9^{9999}-7}"), "\\frac{1}{2}", 0.0),
    "(9^{9999}-7)^{1/2} (found)": (_box("(9^{9999}-7)^{1/2}"), "\\frac{1}{2}", 0.0),
    "a constant against x+1 (fuzzed)": (_box("\\frac{9!}{\\log(\\pi)}"), "x+1", 0.0),
    "(x+y+z)^{99} (found)": (_box("(x+y+z)^{99}"), "5", 0.0),
    "(x+1)^{999} (found)": (_box("(x+1)^{999}"), "5", 0.0),
    "20 nested braces (found)": (_box(_nest("{", "}", 20)), "5", 0.0),
    "40 nested parentheses (found)": (_box(_nest("(", ")", 40)), "5", 0.0),
    "8 nested sines (found)": (_box(_nest("\\sin(", ")", 8)), "5", 0.0),
    "huge \\frac nest": (_box(_nest("\\frac{1}{1+", "}", 5_000)), "5", 0.0),
    "huge \\sqrt nest": (_box(_nest("\\sqrt{", "}", 5_000)), "5", 0.0),
    "short \\frac nest": (_box(_nest("\\frac{1}{1+", "}", 12)), "5", 0.0),
    "short \\sqrt nest": (_box(_nest("\\sqrt{", "}", 25)), "5", 0.0),
    "\\boxed{} on every line": ("\n".join(f"step {i}: \\boxed{{{i}}}" for i in range(50_000)), "5", 0.0),
    "\\boxed{} on every line, right one last": (
        "\n".join(f"step {i}: \\boxed{{{i}}}" for i in range(50_000)) + "\n\\boxed{5}", "5", 1.0),
    "unbalanced box": ("\\boxed{\\frac{1}{2}", "0.5", 0.0),
    "unbalanced \\left": (_box("\\left( 1, 2 \\right"), "(1,2)", 0.0),
    "missing \\frac argument": (_box("\\frac{1}"), "5", 0.0),
    "stray closing braces": ("}}}}" * 1000 + _box("5") + "}}}}", "5", 1.0),
    "lone \\left commands": (_box("\\left(" * 100), "5", 0.0),
    "NUL bytes": ("\x00" * 1000 + _box("5\x00"), "5", 0.0),
    "NUL bytes around a right answer": ("\x00" * 1000 + _box("5") + "\x00", "5", 1.0),
    "lone surrogate": (_box("\ud800"), "5", 0.0),
    "lone surrogates around a right answer": ("\udfff\ud800" + _box("5"), "5", 1.0),
    "surrogateescape bytes": (b"\\boxed{\xff\xfe5\x80}".decode("utf-8", errors="surrogateescape"), "5", 0.0),
    # Just inside the pre-filter's limits: these do reach sympy, which must still answer quickly.
    "limit: 5 nested sines": (_box(_nest("\\sin(", ")", 5)), "5", 0.0),
    "limit: 5 nested parentheses": (_box(_nest("(", ")", 5)), "5", 0.0),
    "limit: (x+y+z)^{12}": (_box("(x+y+z)^{12}"), "x+y+z", 0.0),
    "limit: (x+1)^{12}(x+2)^{12}": (_box("(x+1)^{12}(x+2)^{12}"), "x^2+1", 0.0),
    "limit: 9^{9999}": (_box("9^{9999}"), "5", 0.0),
    "limit: (2^{100})^{100}": (_box("(2^{100})^{100}"), "5", 0.0),
    "limit: 999!": (_box("999!"), "5", 0.0),
    "limit: \\binom{9999}{4999}": (_box("\\binom{9999}{4999}"), "5", 0.0),
    "limit: 290-digit square root": (_box("\\sqrt{" + "9" * 290 + "}"), "5", 0.0),
    "limit: 90-element set": (_box("\\{" + ",".join(map(str, range(90))) + "\\}"), "\\{1,2\\}", 0.0),
    "limit: 24 sines of x": (_box("+".join(f"\\sin({i} x)" for i in range(1, 25))), "x", 0.0),
    "limit: right answer as an unexpanded product": (_box("(x+1)(x-1)"), "x^2-1", 1.0),
}
# chain_sum's Decimal path must cope with the same junk (and give 1.0 only to real matches).
RG_CASES = {
    "gigantic integer": (_box("9" * 100_000), "5", 0.0),
    "1e999999": (_box("1e999999"), "5", 0.0),
    "1 MB of commas": (_box("," * 2**20), "5", 0.0),
    "leading zeros": (_box("0" * 100_000 + "5"), "5", 1.0),
    "NUL byte": (_box("5\x00"), "5", 0.0),
    "lone surrogate": (_box("5\ud800"), "5", 0.0),
    "sNaN": (_box("sNaN"), "5", 0.0),
}
# Task scorers that hand the answer to sympy's parse_expr (which evals) never see dunders.
EVAL_BAIT = _box("__import__('os').system('touch /tmp/pwned')")
ALL = [(f"math: {k}", MATH, *v) for k, v in CASES.items()] + [(f"rg: {k}", CHAIN_SUM, *v) for k, v in RG_CASES.items()]
IDS = [name for name, *_ in ALL]


@pytest.fixture(scope="module", autouse=True)
def warm_verifier():
    # The first math-verify call imports sympy and the LaTeX grammar, the first trigonometric compare
    # the simplifier's modules (~0.5 s each): not the input's fault; a scoring worker pays them at start.
    warm_up()
    assert score_and_error(MATH, _box("\\frac12"), "0.5") == (1.0, None)
    assert score_and_error(CHAIN_SUM, _box("5"), "5") == (1.0, None)


@pytest.mark.parametrize("name, source, completion, truth, expected", ALL, ids=IDS)
def test_inline_is_fast_and_right(name, source, completion, truth, expected):
    start = time.process_time()  # this process's CPU time: the work the input costs, whatever else runs
    reward, error = score_and_error(source, completion, truth)
    elapsed = time.process_time() - start
    assert error is None
    shaped = shaped_reward(reward, completion, format_weight=0.5)  # the format term must cope too
    print(f"{elapsed:7.3f} s  {name}")
    assert reward == expected
    assert elapsed < MAX_SECONDS, f"{name} took {elapsed:.2f} s"
    assert shaped in {reward, reward + 0.5}


@pytest.mark.parametrize("name, source, completion, truth, expected", ALL, ids=IDS)
def test_inline_memory_is_bounded(name, source, completion, truth, expected):
    tracemalloc.start()
    try:
        score_and_error(source, completion, truth)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"{name} peaked at {peak / 2**20:.0f} MB"


def test_through_the_pool_no_item_hits_the_timeout():
    # The per-case CPU bound is checked inline above. Through the pool the clock is the wall's, which a busy
    # machine stretches (the suite runs beside other processes on two cores): the margin keeps this test
    # about the worker path (every item scored right, none crashed or refused), not about the machine's load.
    with ScoringPool(workers=2, timeout_s=5 * MAX_SECONDS) as pool:
        sources = [source for _, source, *_ in ALL]
        rewards = pool.score(sources, [c for *_, c, _, _ in ALL], [t for *_, t, _ in ALL])
        assert (pool.timeouts, pool.crashes, pool.errors) == (0, 0, 0)
    assert rewards == [expected for *_, expected in ALL]


def test_no_full_context_prediction(monkeypatch):
    """The parses that were slow used ANTLR's full-context (LL) prediction; SLL-first parsing avoids it."""
    from antlr4.atn.ParserATNSimulator import ParserATNSimulator

    full_context = []
    original = ParserATNSimulator.execATNWithFullContext
    monkeypatch.setattr(ParserATNSimulator, "execATNWithFullContext",
                        lambda self, *args: full_context.append(1) or original(self, *args))
    for name in ("limit: 90-element set", "limit: 5 nested parentheses", "limit: 5 nested sines"):
        completion, truth, expected = CASES[name]
        assert score_and_error(MATH, completion.replace("2", "3"), truth + " ") == (expected, None)  # not cached
    assert full_context == []


def test_eval_based_task_scorers_never_see_dunders(monkeypatch):
    import components.reward.gym as gym

    seen = []

    class RecordingScorer:
        def score_answer(self, answer, entry):
            seen.append(answer)
            return 0.0

    monkeypatch.setattr(gym, "_rg_dataset", lambda task: RecordingScorer())
    # In-process (the verifier a worker runs), so that the recording scorer sees what a worker's would.
    assert score_and_error("reasoning_gym/countdown", EVAL_BAIT, "24") == (0.0, None)
    assert score_and_error("reasoning_gym/countdown", _box("(3 + 5) * 3"), "24") == (0.0, None)
    assert seen == ["(3 + 5) * 3"]  # the harmless answer reached the task's scorer, the bait did not


def test_model_output_is_never_evaluated():
    files = sorted((Path(__file__).resolve().parents[2] / "components" / "reward").glob("*.py"))
    names = {f.name for f in files}
    assert {"score.py", "verify.py", "pool.py", "gym.py", "gym_tasks.py", "math_equal.py", "guards.py",
            "normalize.py", "latex_parse.py"} <= names, names
    for path in files:
        code = path.read_text()
        assert not re.search(r"(?<![\w.])(eval|exec|compile)\(|sympify\(|parse_expr\(", code), path.name
