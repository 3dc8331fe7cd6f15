"""MLflow races and leaks between stages: stages creating one fresh sqlite store at once, a
stage that fails after promoting, and absolute paths of this checkout logged to the store."""

from __future__ import annotations

import errno
import multiprocessing
from pathlib import Path

import pytest

from components.config import REPO_ROOT, load_config
from components.infra.tracking import END_REASON_TAG, ensure_experiment, entry_point
from tests.support.promotion import workspace, write_eval  # noqa: F401  (a fixture, and its eval results)

ROUNDS, PROCESSES = 1, 3  # fresh stores; stages opening each at once (without the lock 3 of 3 runs failed)


def _create_stores(root: str, barrier, results) -> None:
    import mlflow  # noqa: F401  (imported before the barrier: the processes then start the store together)

    for i in range(ROUNDS):
        cfg = load_config(overrides=[f"tracking.tracking_uri=sqlite:///{root}/round{i}/mlflow.db"])
        barrier.wait(timeout=120)
        try:
            results.put((i, ensure_experiment(cfg)))
        except Exception as exc:
            results.put((i, f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_stages_creating_a_fresh_store_at_once_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_create_stores, args=(str(tmp_path), barrier, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    got = [results.get(timeout=300) for _ in range(PROCESSES * ROUNDS)]
    for p in procs:
        p.join(timeout=60)
    errors = [r for _, r in got if not r.isdigit()]
    assert not errors, errors
    by_round: dict[int, set[str]] = {}
    for i, experiment_id in got:
        by_round.setdefault(i, set()).add(experiment_id)
    assert all(len(ids) == 1 for ids in by_round.values()), by_round  # one experiment per store, not two


@pytest.mark.slow
def test_verify_that_fails_after_promoting_ends_its_run_failed(workspace, monkeypatch):
    import mlflow

    from components.gate import promotion

    root, cfg = workspace
    write_eval(root, "sft", [i % 2 == 0 for i in range(200)])  # 0.50
    write_eval(root, "rl", [i % 5 != 0 for i in range(200)])  # 0.80: promoted

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(promotion, "atomic_write_json", disk_full)  # the metrics file, written last
    with pytest.raises(OSError, match="No space left"):
        promotion.verify_and_promote(cfg)
    assert str(mlflow.MlflowClient().get_model_version_by_alias("pipo-policy", "champion").version) == "1"
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"  # as the stage's exit status says, though the alias moved
    assert "No space left" in run.data.tags[END_REASON_TAG]


@pytest.mark.slow
def test_no_tag_param_or_mlmodel_field_names_the_checkout(workspace, tmp_path):
    import mlflow

    from components.gate.promotion import verify_and_promote

    root, cfg = workspace
    write_eval(root, "sft", [i % 2 == 0 for i in range(200)])
    write_eval(root, "rl", [i % 5 != 0 for i in range(200)])
    verify_and_promote(cfg)
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    checkout = str(REPO_ROOT)
    assert run.data.tags["mlflow.source.name"] == entry_point()
    leaks = {k: v for k, v in {**run.data.tags, **run.data.params}.items() if checkout in v or str(root) in v}
    assert not leaks
    model = Path(mlflow.artifacts.download_artifacts("models:/pipo-policy/1", dst_path=str(tmp_path / "dl")))
    # (its artifact_path is the store's own address: here under the workspace, never the checkout)
    assert [line for line in (model / "MLmodel").read_text().splitlines() if checkout in line] == []
    loaded = mlflow.pyfunc.load_model("models:/pipo-policy/1")  # MLflow finds the code inside the artifact
    assert list(loaded.predict({"prompt": ["1+1="]}, params={"max_new_tokens": 2}).columns) == ["completion", "answer"]
