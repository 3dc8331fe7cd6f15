"""Model output must never run as code: every accepted reasoning-gym task and the math sources score
code-shaped answers 0.0 and leave no file behind, inline and in the scoring workers; unknown tasks
are refused at prepare and never reach a task scorer; real answers of every accepted task still score 1.0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import components.reward.gym as gym
import components.reward.pool as scoring
import components.reward.score as rewards
from components.config import load_config
from components.data.ingest import IngestError
from components.data.prepare import prepare
from components.reward.gym_tasks import ACCEPTED_TASKS, PARSED_TASKS, is_plain_arithmetic
from components.reward.gym import RG_PREFIX
from components.reward.score import compute_score
from components.reward.pool import ScoringPool
from components.reward.verify import score_and_error

MATH_SOURCES = ["lighteval/MATH", "HuggingFaceH4/MATH-500", "math_dapo"]
TASKS = sorted(ACCEPTED_TASKS)

# Each payload tries to leave a file named pwned* in the working directory (or to hang sympy).
PAYLOADS = {
    "open().write": 'open("pwned_open.txt", "w").write("x")',
    "exec": "exec(\"open('pwned_exec.txt', 'w')\")",
    "__import__ os.system": '__import__("os").system("touch pwned_import")',
    "os.system": 'os.system("touch pwned_os")',
    "attribute chain": "().__class__.__bases__[0].__subclasses__()",
    "lambda": '(lambda: open("pwned_lambda.txt", "w"))()',
    "list comprehension": '[open("pwned_listcomp.txt", "w") for _ in [1]]',
    "getattr": 'getattr(__builtins__, "open")("pwned_getattr.txt", "w")',
    "arithmetic around a call": '1 + open("pwned_sum.txt", "w").write("x") * 0',
    "huge exponent": "9**9**9",
    "deep nesting": "(" * 200 + "1" + ")" * 200,
    "deep nesting with a call": "(" * 30 + 'open("pwned_deep.txt", "w")' + ")" * 30,
}


def _box(inner: str) -> str:
    return "\\boxed{" + inner + "}"


def _item(task: str) -> dict:
    import reasoning_gym

    return reasoning_gym.create_dataset(task, size=1, seed=3)[0]


@pytest.fixture(scope="module")
def items() -> dict[str, dict]:
    return {task: _item(task) for task in TASKS}


def _hostile_batch(items: dict[str, dict]) -> list[tuple]:
    """(source, completion, truth, extra_info) for every payload against every task and math source."""
    targets = [(RG_PREFIX + t, items[t]["answer"], {"metadata": items[t]["metadata"]}) for t in TASKS]
    targets += [(s, "24", None) for s in MATH_SOURCES]
    return [(source, _box(p), truth, extra) for source, truth, extra in targets for p in PAYLOADS.values()]


def test_every_payload_scores_zero_inline_and_leaves_no_file(items, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch = _hostile_batch(items)
    # In this process, in tmp_path: compute_score would hand the items to workers started elsewhere.
    scores = {(s, c): score_and_error(s, c, t, e)[0] for s, c, t, e in batch}
    assert [k for k, v in scores.items() if v != 0.0] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_every_payload_scores_zero_in_the_workers_and_leaves_no_file(items, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the workers start here, so a payload's relative path lands here too
    # Force every item through the workers, the bounded ones included.
    monkeypatch.setattr(scoring, "cost_is_bounded", lambda *args: False)
    batch = _hostile_batch(items)
    with ScoringPool(workers=2, timeout_s=10.0) as pool:
        scores = pool.score(*(list(column) for column in zip(*batch)))
        assert len(pool.pids) == 2
        assert pool.crashes == 0 and pool.errors == 0
    assert [(s, c) for (s, c, _, _), v in zip(batch, scores) if v != 0.0] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_the_whitelist_parser_refuses_the_payloads(payload):
    assert not is_plain_arithmetic(payload, frozenset("xC"))


@pytest.mark.parametrize("expr, names, ok", [
    ("94*4 - 61 - 6", "", True),
    ("(10*(8 - 5) - 6)", "", True),
    ("-896*x**5 + 3584*x**4 + 2240*x**3", "x", True),
    ("-34*x**8/15 - 5*x/4 + C", "xC", True),
    ("x**-2 + 1.5e3", "x", True),
    ("y + 1", "x", False),  # a name the task does not use
    ("x**64", "x", True),
    ("(x**8)**9", "x", False),  # nested exponents multiplied out: 72 > MAX_POWER
    ("x**(1/2)", "x", False),  # non-literal exponent
    ("2^3", "", False),  # xor in Python
    ("3j", "", False),
    ("True", "", False),
    ("1_000", "", False),
    ("x.real", "x", False),
    ("x(2)", "x", False),
    ("", "", False),
])
def test_the_whitelist_parser_accepts_only_plain_arithmetic(expr, names, ok):
    assert is_plain_arithmetic(expr, frozenset(names)) is ok


@pytest.mark.parametrize("task", TASKS)
def test_real_answers_of_every_accepted_task_score_one(task, items):
    item = items[task]
    extra = {"metadata": item["metadata"]}
    source = RG_PREFIX + task
    assert compute_score(source, _box(item["answer"]), item["answer"], extra) == 1.0
    if task in PARSED_TASKS:
        # Not the same string, so the task's own scorer decides, after the whitelist parser.
        assert compute_score(source, _box(f"({item['answer']})"), item["answer"], extra) == 1.0
        assert compute_score(source, _box(f"({item['answer']}) * 2"), item["answer"], extra) == 0.0


def test_real_answers_score_one_in_the_workers(items):
    sources = [RG_PREFIX + t for t in TASKS]
    completions = [_box(f"({items[t]['answer']})" if t in PARSED_TASKS else items[t]["answer"]) for t in TASKS]
    truths = [items[t]["answer"] for t in TASKS]
    extras = [{"metadata": items[t]["metadata"]} for t in TASKS]
    with ScoringPool(workers=1, timeout_s=10.0) as pool:
        assert pool.score(sources, completions, truths, extras) == [1.0] * len(TASKS)
        assert pool.timeouts == 0


@pytest.mark.parametrize("task", ["intermediate_integration", "no_such_task"])
def test_unknown_tasks_score_zero_without_running_a_task_scorer(task, monkeypatch):
    def refuse(name):
        raise AssertionError(f"a reasoning-gym scorer ran for {name}")

    monkeypatch.setattr(gym, "_rg_dataset", refuse)
    answer = "-4*(-2*x - 8)**(3/2)/3 + C"
    assert compute_score(RG_PREFIX + task, _box(answer), answer) == 0.0
    assert compute_score(RG_PREFIX + task, _box(PAYLOADS["open().write"]), answer) == 0.0
    assert not rewards.cost_is_bounded(RG_PREFIX + "countdown", _box("1"))
    assert rewards.cost_is_bounded(RG_PREFIX + task, _box(answer))  # 0.0 at once, no worker needed


def test_prepare_refuses_an_unknown_task_naming_it_and_the_accepted_ones(tmp_path):
    item = _item("intermediate_integration")
    rows = [{"data_source": RG_PREFIX + ("intermediate_integration" if i == 3 else "chain_sum"),
             "prompt": [{"role": "user", "content": f"question {i}"}],
             "reward_model": {"ground_truth": item["answer"] if i == 3 else str(i)}} for i in range(40)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    cfg = load_config(overrides=["data.source=verl", f"data.files=[{path}]", "data.num_eval=5",
                                 "data.num_sft=1", "data.num_rl=20", f"data.out_dir={out}"])
    with pytest.raises(IngestError) as err:
        prepare(cfg, len, 10_000, tmp_path / "reports")
    message = str(err.value)
    assert "intermediate_integration" in message
    assert all(task in message for task in ACCEPTED_TASKS)
    assert not out.exists()
    assert not any(Path(tmp_path).glob("pwned*"))
