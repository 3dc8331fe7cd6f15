"""The whole pipeline on a real architecture: a Qwen2 causal LM with a byte-level BPE tokenizer, a
ChatML chat template and an end-of-turn token that is not the tokenizer's EOS, built here with random
weights (components/model/local_qwen2.py), fed verl chat-layout data with a system prompt.

prepare -> sft -> rl (GRPO + PIPO) -> evaluate -> verify, the real stage functions in-process (what
`dvc repro` runs), with LoRA off and on. Only the weights differ from a downloaded Qwen2.5-Instruct.
"""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch

from tests.support.e2e import make_repo, registered_versions

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SYSTEM = "You are a careful calculator. Put the final answer in \\boxed{}."
OVERRIDES = [
    "data.source=verl", "data.files=[data/chat_sums.parquet]", "data.num_sft=300", "data.num_rl=200",
    "data.num_eval=16", "data.chat_template=auto",
    "sft.epochs=6", "sft.batch_size=16", "sft.lr=3e-3", "sft.warmup_ratio=0.1",
    "rl.iterations=3", "rl.prompts_per_iteration=4", "rl.num_generations=4", "rl.max_completion_length=40",
    "rl.pipo.enabled=true", "rl.pipo.window=2", "rl.pipo.min_history=1", "rl.checkpoint_every=3",
    "rl.max_tokens_per_micro_batch=400",  # several micro-batches per step: accumulation runs for real
    "eval.num_samples=2", "eval.max_completion_length=40", "verify.num_resamples=200",
    "reward.workers=0",
]


def chat_sums(n: int, seed: int) -> pd.DataFrame:
    """verl layout: chat prompt (system + user), worked solution with the boxed answer as ground truth."""
    from components.data.worked_solution import format_solution

    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), rng.choice("+-")
        if (a, b, op) in seen:
            continue
        seen.add((a, b, op))
        answer = str(a + b if op == "+" else a - b)
        rows.append({"data_source": "reasoning_gym/chain_sum",
                     "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{a}{op}{b}="}],
                     "reward_model": {"style": "rule", "ground_truth": format_solution(f"{a}{op}{b}=", answer)},
                     "ability": "arithmetic"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory):
    from components.model.local_qwen2 import build_local_qwen2

    return build_local_qwen2(tmp_path_factory.mktemp("qwen2") / "qwen2-test", "test")


class RolloutRecorder:
    """Wraps the hf engine's generate to keep what it really produced (prompt ids, completions)."""

    def __init__(self, monkeypatch):
        from components.rollout.hf_engine import HFRolloutEngine

        self.batches, real = [], HFRolloutEngine.generate

        def generate(engine, *args, **kwargs):
            batch = real(engine, *args, **kwargs)
            self.batches.append((batch, list(engine.stop_ids)))
            return batch

        monkeypatch.setattr(HFRolloutEngine, "generate", generate)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_pipeline_runs_a_chat_model_end_to_end(tmp_path, monkeypatch, qwen2_folder, lora):
    from components.config import load_config
    from components.model.factory import load_policy
    from components.registry.versions import download_policy
    from components.stages import STAGE_NAMES, stage_function

    repo = make_repo(tmp_path / "repo")
    chat_sums(560, seed=0).to_parquet(repo / "data" / "chat_sums.parquet")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    base = repo / "models" / "base" / "qwen2-test"  # linked file by file, as for a model on a shared disk
    base.mkdir()
    for file in qwen2_folder.iterdir():
        (base / file.name).symlink_to(file)
    cfg = load_config(repo / "params.yaml", OVERRIDES + [f"model.name_or_path={base}",
                                                         f"model.lora.enabled={str(lora).lower()}"])
    recorder = RolloutRecorder(monkeypatch)
    for stage in STAGE_NAMES:
        if stage == "evaluate":
            rl_rollouts = list(recorder.batches)
        stage_function(stage)(cfg)

    _, tok = load_policy(qwen2_folder)
    im_end, eos = tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id
    assert im_end != eos

    # The chat template reached the model: the first rollout's prompt ids decode to the rendered chat.
    first, stop_ids = rl_rollouts[0]
    assert stop_ids[0] == im_end and eos in stop_ids  # the generation config's end of turn, then EOS
    prompt = tok.decode(first.prompt_ids[0][first.prompt_mask[0].bool()], skip_special_tokens=False)
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("=<|im_end|>\n<|im_start|>assistant\n")

    # Rollouts stop at the end-of-turn token: a finished completion's last token is a stop id, no
    # token follows it, and after full SFT on assistant turns the model does end its turns with
    # <|im_end|> (rank-8 adapters on a random-init base do not learn that in this budget).
    ends = []
    for batch, _ in rl_rollouts:
        lengths = batch.completion_mask.sum(-1)
        for row in range(len(batch)):
            n = int(lengths[row])
            if not bool(batch.truncated[row]):
                ends.append(int(batch.completion_ids[row, n - 1]))
            assert not torch.isin(batch.completion_ids[row, :max(n - 1, 0)], torch.tensor(stop_ids)).any()
    assert set(ends) <= set(stop_ids)
    # LoRA: whether any completion stops before the length limit is chance (the draws decide), so only full
    # SFT must show one
    assert lora or im_end in ends

    # evaluate scored all three models; the RL model is registered, merged (no adapter), and loads
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    assert set(metrics) == {"untrained", "sft", "rl"} and 0.0 <= metrics["rl"]["chain_sum"]["pass@1"] <= 1.0
    versions = registered_versions(repo)
    assert len(versions) == 1
    folder = download_policy(cfg.registry.model_name, versions[0].version, tmp_path / "registered")
    model, loaded_tok = load_policy(folder)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert not any("lora" in name for name in model.state_dict())
    assert loaded_tok.chat_template == tok.chat_template
    # the registered weights carry the training (the adapters were merged in, not dropped)
    initial, _ = load_policy(qwen2_folder)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), initial.state_dict().values()))
