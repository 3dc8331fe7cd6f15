"""The verified-improvement guard (rl.guard): its decision on hand numbers, and on a tiny policy whose
probe scores are scripted per iteration: a rollback restores the best checkpoint and decays the lr, a
drop past max_rollbacks stops the run, the output is the final policy unless its last check drops (or
rl.guard.output is best), else the best verified checkpoint, and a run stopped
and resumed on either side of a rollback continues exactly."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from components.config import load_config
from components.rl import checkpoint as ckpt
from components.rl import streams
from components.rl import trainer as trainer_module
from components.rl.guard import KEEP, ROLLBACK, SAVE, STOP, Guard, decide
from components.rl.update import PolicyUpdate
from tests.support.rl import TINY, parity_reward, run_trainer

GUARD = ["rl.guard.enabled=true", "rl.guard.every=2", "rl.pipo.probe.size=8", "rl.checkpoint_every=3"]
# the probe's per-prompt scores at each check (8 prompts): better at 2, a collapse at 4, noise at 6, worse at 8
SCRIPT = {0: [1, 1, 1, 1, 0, 0, 0, 0], 2: [1, 1, 1, 1, 1, 1, 0, 0], 4: [0] * 8, 6: [1, 1, 1, 1, 1, 0, 0, 0],
          8: [0] * 8}


def guard(**kw) -> Guard:
    cfg = load_config(overrides=[f"rl.guard.{k}={v}" for k, v in kw.items()]).rl.guard
    return Guard(cfg, lr=1e-3)


def test_decision_on_hand_numbers():
    # paired change -0.25 with se 0.1637: 1.53 SE below the best
    assert decide(-0.25, 0.1637, 0.25, 0.5, drop_se=2.0, rollbacks=0, max_rollbacks=3) == KEEP
    assert decide(-0.25, 0.1637, 0.25, 0.5, drop_se=1.0, rollbacks=0, max_rollbacks=3) == ROLLBACK
    assert decide(-0.25, 0.1637, 0.25, 0.5, drop_se=1.0, rollbacks=3, max_rollbacks=3) == STOP
    assert decide(0.1, 0.05, 0.6, 0.5, drop_se=2.0, rollbacks=0, max_rollbacks=3) == SAVE  # a new best
    assert decide(-0.2, 0.1, 0.3, 0.5, drop_se=2.0, rollbacks=0, max_rollbacks=3) == KEEP  # exactly 2 SE: keep
    assert decide(-1.0, 0.0, 0.0, 1.0, drop_se=2.0, rollbacks=0, max_rollbacks=3) == ROLLBACK  # every prompt lost


def test_check_pairs_the_same_prompts_and_tracks_best_rollbacks_and_lr():
    g = guard(drop_se=1.0, lr_decay=0.5)
    best = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])
    assert g.check(0, best).action == SAVE and g.best_probe == 0.5
    # d = [-1, -1, 0 x 6]: mean -0.25, sd 0.4629, se 0.1637 -> 1.53 SE below
    v = g.check(2, torch.tensor([0.0, 0, 1, 1, 0, 0, 0, 0]))
    assert v.action == ROLLBACK
    assert v.metrics["guard/change"] == pytest.approx(-0.25)
    assert v.metrics["guard/change_se"] == pytest.approx(0.16366, abs=1e-5)
    assert (v.metrics["guard/rollbacks"], v.metrics["guard/lr"], v.metrics["guard/best_probe"]) == (1.0, 5e-4, 0.5)
    # the same mean 0.25 from other prompts: d = [-1 x 4, 1, 1, 0, 0], se 0.3134: within 1 SE, kept
    assert g.check(4, torch.tensor([0.0, 0, 0, 0, 1, 1, 0, 0])).action == KEEP
    assert g.check(6, torch.tensor([1.0, 1, 1, 1, 1, 0, 0, 0])).action == SAVE and g.best_iteration == 6
    state = g.state_dict()
    again = guard()
    again.load_state_dict(state)
    assert (again.best_iteration, again.rollbacks, again.lr, again.stopped) == (6, 1, 5e-4, False)
    assert torch.equal(again.best_scores, g.best_scores)


def test_a_final_check_never_rolls_back():
    g = guard()
    g.check(0, torch.ones(8))
    assert g.check(10, torch.zeros(8), final=True).action == KEEP and g.rollbacks == 0


@pytest.fixture(scope="module")
def policy():
    from components.model.factory import initial_policy

    return initial_policy(load_config(overrides=TINY).model, seed=0)


@pytest.fixture
def scripted(monkeypatch):
    """The trainer's probe returns SCRIPT[iteration] (told from the probe stream's seed); records, per
    check, a checksum of the weights it scored; the lr of every update step is recorded too."""
    seeds = {streams.torch_stream(streams.PROBE, 0, it, 0).initial_seed(): it for it in range(20)}
    seen = {"weights": [], "lr": []}

    def score(engine, scorer, probe_set, cfg, generator):
        it = seeds[generator.initial_seed()]
        seen["weights"].append((it, float(sum(p.detach().double().sum() for p in engine.model.parameters()))))
        return torch.tensor(SCRIPT.get(it, [0] * 8), dtype=torch.float64)  # 3, 5: a short run's final check

    real_step = PolicyUpdate.step

    def step(self, batch, plan, lr, spec, joint=None):
        seen["lr"].append(lr)
        return real_step(self, batch, plan, lr, spec, joint)

    monkeypatch.setattr(trainer_module, "score_batch", parity_reward)
    monkeypatch.setattr(trainer_module, "score_probe", score)
    monkeypatch.setattr(PolicyUpdate, "step", step)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield seen
    torch.set_num_threads(threads)


def weights_equal(model, path) -> bool:
    saved = load_file(str(path / "weights.safetensors"))
    return all(torch.equal(v, model.state_dict()[k]) for k, v in saved.items())


def test_a_collapse_rolls_back_to_the_best_decays_the_lr_and_the_output_is_the_best(policy, tmp_path, scripted):
    logged = []
    model, result = run_trainer(policy, GUARD, 8, checkpoint_dir=tmp_path, log_metrics=lambda m, s: logged.append(s))
    h = result.history
    assert [h[i]["guard/best_probe"] for i in (0, 2, 4, 6)] == [0.5, 0.75, 0.75, 0.75]
    assert [h[i]["guard/rollbacks"] for i in (0, 2, 4, 6)] == [0, 0, 1, 1]
    assert h[4]["guard/lr"] == h[0]["guard/lr"] * 0.5 and "guard/probe" not in h[1]
    assert h[4]["perf/guard_seconds"] > 0
    # the updates before the rollback at 4 used rl.lr, the ones after it half of it
    lr = load_config(overrides=TINY).rl.lr
    assert scripted["lr"][0] == lr and scripted["lr"][-1] == lr * 0.5
    # the output: the best verified checkpoint (iteration 2), not the last; the final check is logged at 8
    assert result.guard["best_iteration"] == 2 and "1 rollback" in result.guard["reason"]
    assert weights_equal(model, tmp_path / "best" / "iter-000002") and logged[-1] == 8
    assert sorted(p.name for p in (tmp_path / "best").glob("iter-*")) == ["iter-000002"]


@pytest.mark.parametrize("output", ["last_verified", "best"])
def test_a_final_policy_within_the_noise_of_the_best_is_the_output_unless_output_is_best(
        policy, tmp_path, scripted, monkeypatch, output):
    """Best at 2 (0.75); at 8 the final policy scores 0.625: one prompt lost, 1 paired SE (0.125) below,
    no drop at drop_se 3. last_verified outputs the final weights, best restores iteration 2."""
    monkeypatch.setitem(SCRIPT, 8, [1, 1, 1, 1, 1, 0, 0, 0])
    model, result = run_trainer(policy, GUARD + [f"rl.guard.output={output}"], 8, checkpoint_dir=tmp_path)
    assert result.history[6]["guard/best_probe"] == 0.75 and result.guard["best_iteration"] == 2
    if output == "last_verified":
        assert result.guard["output_iteration"] == 8
        assert result.guard["reason"] == ("final policy at iteration 8 (probe 0.6250), verified within 3 paired SE "
                                          "of the best at iteration 2 (probe 0.7500); 1 rollback")
        assert not weights_equal(model, tmp_path / "best" / "iter-000002")
    else:
        assert result.guard["output_iteration"] == 2 and result.guard["reason"].startswith("best verified at")
        assert weights_equal(model, tmp_path / "best" / "iter-000002")


def test_a_final_drop_makes_the_best_the_output_and_says_so():
    g = guard()  # last_verified, drop_se 3
    restored = []
    g.restore = lambda it, weights_only=False: restored.append((it, weights_only))
    scores = {0: torch.tensor([1.0] * 6 + [0.0] * 2), 10: torch.zeros(8)}  # 6 prompts lost: 4.6 SE below
    g.score = lambda it: scores[it]
    g.at(0)
    out = g.output(10)
    assert out["output_iteration"] == 0 and restored == [(0, True)]
    assert out["reason"].endswith("the final policy (probe 0.0000) fell more than 3 paired SE below it")


def test_the_rollback_restores_the_best_weights(policy, tmp_path, scripted, monkeypatch):
    restored = []
    real = trainer_module.RLTrainer.restore

    def restore(self, iteration, weights_only=False):
        real(self, iteration, weights_only)
        restored.append((iteration, weights_only, weights_equal(self.acc.unwrap_model(self.model),
                                                                 tmp_path / "best" / ckpt.checkpoint_name(2))))

    monkeypatch.setattr(trainer_module.RLTrainer, "restore", restore)
    run_trainer(policy, GUARD, 8, checkpoint_dir=tmp_path)
    assert restored == [(2, False, True), (2, True, True)]  # the rollback at 4, the output at the end


def test_a_drop_after_max_rollbacks_stops_the_run_with_the_best_as_output(policy, tmp_path, scripted):
    model, result = run_trainer(policy, GUARD + ["rl.guard.max_rollbacks=0"], 8, checkpoint_dir=tmp_path)
    assert len(result.history) == 4 and result.iterations == 4
    assert result.guard["best_iteration"] == 2 and "stopped early at iteration 4" in result.guard["reason"]
    assert weights_equal(model, tmp_path / "best" / "iter-000002")
    # rerunning the stage finds the run stopped: no more training, the same output
    again, rerun = run_trainer(policy, GUARD + ["rl.guard.max_rollbacks=0"], 8, checkpoint_dir=tmp_path, resume=True)
    assert rerun.history == [] and rerun.guard == result.guard
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("stop_at", [3, 5])  # before the rollback at 4, and after it
def test_a_run_stopped_and_resumed_across_a_rollback_matches_an_uninterrupted_one(policy, tmp_path, scripted,
                                                                                  stop_at):
    full_model, full = run_trainer(policy, GUARD, 8, checkpoint_dir=tmp_path / "a")
    run_trainer(policy, GUARD, stop_at, checkpoint_dir=tmp_path / "b")
    resumed_model, resumed = run_trainer(policy, GUARD, 8, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.resumed_from == stop_at
    for a, b in zip(full.history[stop_at:], resumed.history, strict=True):
        stable = {k: v for k, v in a.items() if not k.startswith("perf/")}
        assert stable == {k: b[k] for k in stable}
    assert resumed.guard == full.guard
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


def test_a_resume_from_before_a_rollback_still_finds_the_best_it_knew(policy, tmp_path, scripted, monkeypatch):
    """Checkpoint 4 knows best 2; the run then rolls back at 4 and saves a new best at 6. Killed before
    its next checkpoint, it resumes from 4 and must roll back to 2 again: best 2 was kept on disk."""
    monkeypatch.setitem(SCRIPT, 6, [1] * 7 + [0])
    overrides = GUARD + ["rl.checkpoint_every=4"]
    full_model, full = run_trainer(policy, overrides, 8, checkpoint_dir=tmp_path / "a")
    run_trainer(policy, overrides, 7, checkpoint_dir=tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "iter-000007")  # as if killed before its end-of-run checkpoint
    resumed_model, resumed = run_trainer(policy, overrides, 8, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.resumed_from == 4 and resumed.history[0]["guard/rollbacks"] == 1
    assert resumed.guard == full.guard and full.guard["best_iteration"] == 6
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


def test_the_guard_without_a_checkpoint_folder_is_refused_naming_the_setting(policy):
    with pytest.raises(ValueError, match=r"rl.guard \(on by default\).*needs a checkpoint folder.*"
                                         r"set rl.guard.enabled=false"):
        run_trainer(policy, ["rl.guard.enabled=true"], 1)


def test_the_guard_is_on_by_default():
    assert load_config().rl.guard.enabled  # docs/results/pipo-controls.md: why
