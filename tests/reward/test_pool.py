"""The scoring pool: same rewards as compute_score, hard per-item timeouts, crash recovery, no leaks."""

from __future__ import annotations

import gc
import os
import threading
import time

import psutil
import pytest

from components.config import load_config
from components.reward.pool import ScoringPool, pool_for
from components.reward.score import compute_score

HOOKS = "tests.support.scoring_hooks"
TIMEOUT_S = 2.0
MATH = "HuggingFaceH4/MATH-500"
CHAIN_SUM = "reasoning_gym/chain_sum"


@pytest.fixture(scope="module")
def pool():
    with ScoringPool(workers=2, timeout_s=TIMEOUT_S, extra_scorers_module=HOOKS,
                     preload=("reasoning_gym",)) as p:
        yield p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ok_items(n: int) -> tuple[list[str], list[str], list[str]]:
    """n math items, alternately right (1.0) and wrong (0.0)."""
    completions = [f"so \\boxed{{\\frac{{{2 * i + 1}}}{{2}}}}" for i in range(n)]  # lowest terms
    truths = [str((2 * i + 1) / 2) if i % 2 == 0 else str(i) for i in range(n)]
    return [MATH] * n, completions, truths


def _expected(n: int) -> list[float]:
    return [1.0 if i % 2 == 0 else 0.0 for i in range(n)]


MIXED = [
    (MATH, r"\boxed{\frac{1}{2}}", "0.5", None),
    (MATH, r"\boxed{\dfrac12}", r"\frac{1}{2}", None),
    (MATH, r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", None),
    (MATH, r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"(3,\frac{\pi}{2})", None),
    (MATH, r"\boxed{[1, 2)}", r"[1,2)", None),
    (MATH, r"\boxed{(1, 2]}", r"[1,2)", None),
    (MATH, r"\boxed{\{1, 2, 3\}}", r"\{3, 2, 1\}", None),
    (MATH, r"\boxed{x^2 + 2x + 1}", r"(x+1)^2", None),
    (MATH, r"\boxed{0.333}", r"\frac{1}{3}", None),
    (MATH, r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", None),
    (MATH, r"The answer is \boxed{70}.", ["70"], None),  # verl stores the truth as a list
    (MATH, r"\boxed{71}", ["70"], None),
    (MATH, "no box at all", "70", None),
    (MATH, r"\boxed{10^{10^{10}}}", "5", None),
    (CHAIN_SUM, r"\boxed{85}", "85", None),
    (CHAIN_SUM, r"\boxed{+085.00}", "85", None),
    (CHAIN_SUM, r"\boxed{-4}", "4", None),
    (CHAIN_SUM, r"\boxed{1,000}", "1000", None),
    ("reasoning_gym/spell_backward", r"\boxed{olleh}", "olleh", {"metadata": {}}),
    ("reasoning_gym/spell_backward", r"\boxed{o l l e h}", "olleh", {"metadata": "{}"}),
] * 2


def test_pool_matches_inline_compute_score(pool):
    sources, completions, truths, extras = (list(column) for column in zip(*MIXED))
    expected = [compute_score(*item) for item in MIXED]
    assert 0 < sum(expected) < len(expected)  # a mix of right and wrong answers
    assert pool.score(sources, completions, truths, extras) == expected
    assert pool.counters() == {"timeouts": 0, "crashes": 0, "errors": 0}


def test_workers_start_lazily_and_only_bounded_items_stay_inline():
    with ScoringPool(workers=2, timeout_s=TIMEOUT_S) as pool:
        # chain_sum (a Decimal comparison) and box-less completions are bounded: no worker starts.
        assert pool.score([CHAIN_SUM] * 3 + [MATH], [r"\boxed{85}", r"\boxed{84}", "85", "no box"],
                          ["85"] * 4) == [1.0, 0.0, 0.0, 0.0]
        assert pool.pids == []
        # A math answer needs the deadline, so even a batch of three goes to the workers.
        assert pool.score(*_ok_items(3)) == _expected(3)
        assert len(pool.pids) == 2


def test_workers_are_reused_and_do_not_import_torch(pool):
    first = pool.score(["hook/pid"] * 6, [""] * 6, [""] * 6)
    second = pool.score(["hook/pid"] * 6, [""] * 6, [""] * 6)
    assert {int(p) for p in first + second} <= set(pool.pids)
    assert pool.score(["hook/torch-free"] * 4, [""] * 4, [""] * 4) == [1.0] * 4


def test_hanging_item_times_out_and_the_rest_is_scored(pool):
    sources, completions, truths = _ok_items(12)
    sources[5] = "hook/hang"
    before, pids_before = pool.timeouts, set(pool.pids)
    out: list[list[float]] = []
    start = time.monotonic()
    # From a non-main thread: the timeout must not rely on signals.
    caller = threading.Thread(target=lambda: out.append(pool.score(sources, completions, truths)))
    caller.start()
    caller.join(timeout=30)
    elapsed = time.monotonic() - start
    expected = _expected(12)
    expected[5] = 0.0
    assert out == [expected]
    assert pool.timeouts == before + 1
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 3.0, elapsed
    killed = pids_before - set(pool.pids)
    assert len(killed) == 1 and not any(_alive(pid) for pid in killed)
    assert pool.score(*_ok_items(8)) == _expected(8)  # the replacement works


@pytest.mark.parametrize("how", ["exit", "sigkill", "segfault"])
def test_crashing_item_is_replaced_and_the_batch_survives(pool, how):
    sources, completions, truths = _ok_items(10)
    sources[3] = f"hook/{how}"
    before = pool.crashes
    expected = _expected(10)
    expected[3] = 0.0
    assert pool.score(sources, completions, truths) == expected
    assert pool.crashes == before + 1
    assert len(pool.pids) == 2 and all(_alive(pid) for pid in pool.pids)
    assert pool.score(*_ok_items(6)) == _expected(6)


def test_scorer_errors_score_zero_and_are_counted(pool):
    sources, completions, truths = _ok_items(6)
    sources[2] = "hook/raise"
    expected = _expected(6)
    expected[2] = 0.0
    before = pool.errors
    assert pool.score(sources, completions, truths) == expected
    assert pool.errors == before + 1
    with ScoringPool(workers=0, timeout_s=TIMEOUT_S, extra_scorers_module=HOOKS) as inline:
        assert inline.score(sources, completions, truths) == expected
        assert inline.errors == 1


# A built-in verifier that raises (here on metadata that is not JSON): compute_score logs it and
# scores 0.0 instead of raising, and the pool counts it, inline (spell_backward, a string comparison)
# and in a worker (countdown, whose scorer needs the deadline).
BAD_METADATA = {"metadata": "{not json"}
VERIFIER_ERRORS = [
    ("reasoning_gym/spell_backward", r"\boxed{hello}", "olleh", BAD_METADATA),
    ("reasoning_gym/countdown", r"\boxed{3 * 8}", "(3 + 5) * 3", BAD_METADATA),
]


def test_built_in_verifier_errors_score_zero_and_are_counted(pool):
    assert [compute_score(*item) for item in VERIFIER_ERRORS] == [0.0, 0.0]  # logged, not raised
    sources, completions, truths = _ok_items(4)
    extras = [None] * 4
    for i, item in zip((1, 2), VERIFIER_ERRORS):
        sources[i], completions[i], truths[i], extras[i] = item
    expected = [1.0, 0.0, 0.0, 0.0]
    before = pool.counters()
    assert pool.score(sources, completions, truths, extras) == expected
    assert pool.counters() == {**before, "errors": before["errors"] + 2}
    with ScoringPool(workers=0, timeout_s=TIMEOUT_S) as inline:
        assert inline.score(*(list(c) for c in zip(*VERIFIER_ERRORS[:1]))) == [0.0]
        assert inline.counters() == {"timeouts": 0, "crashes": 0, "errors": 1}
        assert inline.pids == []  # spell_backward is bounded: scored inline


def test_the_pool_takes_its_size_and_limit_from_params():
    with pytest.raises(TypeError):
        ScoringPool()  # no shadow defaults: params.yaml's reward section is the one source
    with pytest.raises(TypeError):
        ScoringPool(2)
    reward = load_config(overrides=["reward.workers=3", "reward.timeout_s=0.5"]).reward
    with pool_for(reward) as configured:
        assert (configured.num_workers, configured.timeout_s) == (3, 0.5)
        assert configured.pids == []  # nothing starts before a batch needs it


def test_score_one_runs_in_a_worker_under_the_timeout(pool):
    assert pool.score_one("hook/pid", "", "") in {float(p) for p in pool.pids}
    start = time.monotonic()
    assert pool.score_one("hook/hang", "", "") == 0.0
    assert time.monotonic() - start < TIMEOUT_S + 3.0


def test_mismatched_columns_are_rejected(pool):
    with pytest.raises(ValueError, match="one entry per item"):
        pool.score([MATH] * 2, ["a"] * 3, ["1"] * 3)


def test_close_leaves_no_worker_processes():
    pool = ScoringPool(workers=2, timeout_s=TIMEOUT_S)
    assert pool.score(*_ok_items(4)) == _expected(4)
    pids = pool.pids
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    pool.close()
    pool.close()  # idempotent
    children = {c.pid for c in psutil.Process().children(recursive=True)}
    assert not any(_alive(pid) for pid in pids) and not children & set(pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.score(*_ok_items(4))


def test_a_forgotten_pool_stops_its_workers_when_collected():
    pool = ScoringPool(workers=1, timeout_s=TIMEOUT_S)
    assert pool.score(*_ok_items(2)) == _expected(2)
    pids = pool.pids
    del pool
    gc.collect()
    assert pids and not any(_alive(pid) for pid in pids)


def test_a_worker_that_cannot_start_is_an_error_not_a_hang(monkeypatch):
    with pytest.raises(ModuleNotFoundError):  # the parent imports the scorers module first
        ScoringPool(workers=1, timeout_s=TIMEOUT_S, extra_scorers_module="tests.no_such_module")
    spawned: list[int] = []  # every worker started, also those the pool has already dropped from `pids`
    real_spawn = ScoringPool._spawn

    def recording_spawn(self):
        worker = real_spawn(self)
        spawned.append(worker.proc.pid)
        return worker

    monkeypatch.setattr(ScoringPool, "_spawn", recording_spawn)
    broken = ScoringPool(workers=2, timeout_s=TIMEOUT_S, preload=("no_such_module",))
    with pytest.raises(RuntimeError, match="while starting"):
        broken.score(*_ok_items(4))
    assert len(spawned) == 2  # both workers really started: the check below is not vacuous
    broken.close()
    children = {c.pid for c in psutil.Process().children(recursive=True)}
    assert not any(_alive(pid) for pid in spawned) and not children & set(spawned)


def test_workers_start_as_items_need_them():
    # reward.workers is an upper bound: one item starts one worker, not all of them.
    with ScoringPool(workers=3, timeout_s=10.0) as lazy:
        assert lazy.score(["math"], [r"\boxed{5}"], ["5"]) == [1.0] and len(lazy.pids) == 1
        assert lazy.score(["math"] * 2, [r"\boxed{5}"] * 2, ["5"] * 2) == [1.0] * 2 and len(lazy.pids) == 2
        assert lazy.score(["math"] * 5, [r"\boxed{5}"] * 5, ["5"] * 5) == [1.0] * 5 and len(lazy.pids) == 3


def test_start_brings_every_worker_up_and_ready_before_a_batch():
    with ScoringPool(workers=2, timeout_s=10.0) as pool:
        pool.start()
        assert len(pool.pids) == 2 and all(w.ready for w in pool._workers)
        pids = set(pool.pids)
        assert pool.score(["math"] * 2, [r"\boxed{5}"] * 2, ["5"] * 2) == [1.0] * 2
        assert set(pool.pids) == pids  # the batch used them: none started, none replaced


def test_a_forked_child_starts_its_own_workers():
    # verl forks reward processes: a child must not talk to its parent's workers through inherited pipes.
    with ScoringPool(workers=1, timeout_s=10.0) as forked:
        assert forked.score(["math"], [r"\boxed{5}"], ["5"]) == [1.0]
        parent_workers = forked.pids
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            ok = forked.score(["math"], [r"\boxed{6}"], ["6"]) == [1.0] and forked.pids != parent_workers
            forked.close()
            os.write(write_end, b"1" if ok else b"0")
            os._exit(0)
        os.waitpid(child, 0)
        assert os.read(read_end, 1) == b"1"
        assert forked.score(["math"], [r"\boxed{7}"], ["7"]) == [1.0] and forked.pids == parent_workers
