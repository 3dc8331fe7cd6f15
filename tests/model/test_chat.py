"""Prompts as the model reads them (components/model/chat.py) and every place that renders them:
the char model keeps today's ids exactly; a chat model gets its template, its system prompt, and
SFT labels that are exactly its assistant turn up to its own end-of-turn token."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from transformers import GenerationConfig

from components.config import load_config
from components.model import chat
from components.model.factory import load_policy, load_tokenizer
from components.model.local_qwen2 import IM_END, build_local_qwen2
from components.model.tokenizer import build_char_tokenizer
from components.sft.train import encode_examples

PROMPTS = ["12+7=", "3 + 4 =", "\\frac{1}{2} + x\n=", ""]
SYSTEM = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+2="}]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """(model, tokenizer, folder) of the local Qwen2 test model: ChatML, <|im_end|> != tokenizer eos."""
    folder = build_local_qwen2(tmp_path_factory.mktemp("project") / "models" / "base", "test")
    model, tok = load_policy(folder)
    return model, tok, folder


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_char_tokenizer_prompt_ids_are_unchanged(mode):
    tok = build_char_tokenizer()
    for prompt in PROMPTS:
        text = chat.render_prompt(tok, prompt, None, mode)
        assert text == "<s>" + prompt  # no template: the BOS string, parsed as the BOS token below
        assert tok(text, add_special_tokens=False)["input_ids"] == tok(prompt)["input_ids"]


def test_char_tokenizer_sft_examples_are_unchanged():
    tok = build_char_tokenizer()
    rows = pd.DataFrame({"prompt": ["47+38=", "1-9="], "solution": ["47+38 = \\boxed{85}", "\\boxed{-8}"]})
    got = encode_examples(tok, rows, GenerationConfig(eos_token_id=tok.eos_token_id), "auto")
    for (ids, labels), prompt, solution in zip(got, rows["prompt"], rows["solution"]):
        # the ids SFT trained on before chat templates: BOS + prompt + solution + EOS, loss on the last two
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = tok(solution, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ids == [tok.bos_token_id] + p + t
        assert labels == [chat.IGNORE] * (1 + len(p)) + t


def test_auto_renders_the_chat_template_with_system_and_generation_prompt(qwen):
    _, tok, _ = qwen
    text = chat.render_prompt(tok, "1+2=", SYSTEM, "auto")
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+2=<|im_end|>\n"
                    "<|im_start|>assistant\n")
    # a plain-text prompt becomes the user's turn
    assert chat.render_prompt(tok, "1+2=", None, "auto") == "<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n"


def test_none_renders_plain_text_keeping_the_system_prompt(qwen):
    _, tok, _ = qwen
    assert chat.render_prompt(tok, "1+2=", SYSTEM, "none") == "Be brief.\n\n1+2="
    assert chat.render_prompt(tok, "1+2=", None, "none") == "1+2="  # no BOS token in a Qwen tokenizer
    with pytest.raises(ValueError, match="auto"):
        chat.render_prompt(tok, "1+2=", None, "chatml")


def test_stop_token_ids_are_generation_config_eos_then_tokenizer_eos(qwen):
    model, tok, _ = qwen
    im_end = tok.convert_tokens_to_ids(IM_END)
    assert im_end != tok.eos_token_id
    assert chat.stop_token_ids(model, tok) == [im_end, tok.eos_token_id]
    assert chat.stop_token_ids(GenerationConfig(eos_token_id=7), tok) == [7, tok.eos_token_id]
    assert chat.stop_token_ids(GenerationConfig(eos_token_id=[tok.eos_token_id, 7]), tok) == [tok.eos_token_id, 7]
    assert chat.stop_token_ids(GenerationConfig(), tok) == [tok.eos_token_id]
    assert chat.stop_token_ids(None, tok) == [tok.eos_token_id]


def test_sft_labels_are_exactly_the_assistant_turn_up_to_its_end_of_turn(qwen):
    model, tok, _ = qwen
    im_end = tok.convert_tokens_to_ids(IM_END)
    ids, labels = chat.sft_example(tok, "1+2=", SYSTEM, "\\boxed{3}", "auto", chat.stop_token_ids(model, tok))
    prompt_ids = tok(chat.render_prompt(tok, "1+2=", SYSTEM, "auto"), add_special_tokens=False)["input_ids"]
    target = tok("\\boxed{3}", add_special_tokens=False)["input_ids"] + [im_end]
    assert ids == prompt_ids + target  # the prompt exactly as rollouts tokenize it, then the turn
    assert labels == [chat.IGNORE] * len(prompt_ids) + target  # ChatML's newline after <|im_end|> not trained


def test_sft_refuses_a_template_whose_prompt_is_not_a_prefix_of_the_conversation(qwen):
    model, tok, folder = qwen
    odd = load_tokenizer(folder)  # a template that opens the generation prompt with text it never renders after
    odd.chat_template = "{% if add_generation_prompt %}GEN {% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    with pytest.raises(ValueError, match="beginning is not the rendered prompt"):
        chat.sft_example(odd, "1+2=", None, "3", "auto", chat.stop_token_ids(model, tok))


def test_render_rows_reads_messages_and_treats_a_missing_column_as_plain(qwen):
    _, tok, _ = qwen
    rows = pd.DataFrame({"prompt": ["1+2=", "5-1="], "messages": [json.dumps(SYSTEM), None]})
    assert chat.render_rows(tok, rows, "none") == ["Be brief.\n\n1+2=", "5-1="]
    old = rows.drop(columns="messages")  # a split prepared before the column existed
    assert chat.render_rows(tok, old, "none") == ["1+2=", "5-1="]
    assert chat.rendered_frame(tok, rows, "auto")["prompt"].iloc[0].startswith("<|im_start|>system\nBe brief.")


def test_sft_examples_follow_the_chat_mode(qwen):
    model, tok, _ = qwen
    rows = pd.DataFrame({"prompt": ["1+2="], "solution": ["3"]})
    (ids, _), = encode_examples(tok, rows, model, "none")
    assert tok.decode(ids) == "1+2=3<|endoftext|>"
    (ids, _), = encode_examples(tok, rows, model, "auto")
    assert tok.decode(ids) == "<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n3<|im_end|>"


def test_prompt_budget_counts_the_rendered_prompt(qwen, monkeypatch):
    from components.stages.prepare import prompt_budget

    _, tok, folder = qwen
    monkeypatch.chdir(folder.parents[1])  # a local model folder must lie in models/base/ (of cwd, here)
    for mode in ("auto", "none"):
        cfg = load_config(overrides=[f"model.name_or_path={folder}", f"data.chat_template={mode}"])
        count_tokens, _ = prompt_budget(cfg)
        want = len(tok(chat.render_prompt(tok, "1+2=", SYSTEM, mode), add_special_tokens=False)["input_ids"])
        assert count_tokens("1+2=", json.dumps(SYSTEM)) == want
    assert count_tokens("1+2=") < want  # the system prompt's tokens are counted


class _Recorder:
    """An engine that records what it was asked to continue and answers with a fixed completion."""

    def __init__(self, tokenizer):
        self.tokenizer, self.seen = tokenizer, []

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, greedy=False, generator=None):
        import torch

        self.seen += list(prompts)
        return SimpleNamespace(texts=["\\boxed{3}"] * len(prompts),
                               completion_mask=torch.ones(len(prompts), 2, dtype=torch.long))


def test_evaluation_generates_from_rendered_prompts_and_tables_keep_the_raw_one(qwen):
    from components.eval.run import evaluate_policy
    from components.reward.pool import pool_for

    _, tok, _ = qwen
    cfg = load_config(overrides=["eval.num_samples=2", "reward.workers=0"])
    data = pd.DataFrame({"id": ["a"], "source": ["reasoning_gym/chain_sum"], "prompt": ["1+2="], "answer": ["3"],
                         "messages": [json.dumps(SYSTEM)]})
    engine = _Recorder(tok)
    with pool_for(cfg.reward) as scorer:
        summary, table = evaluate_policy(engine, data, cfg.eval, 0, scorer=scorer,
                                         rendered=chat.render_rows(tok, data, "auto"))
    assert set(engine.seen) == {chat.render_prompt(tok, "1+2=", SYSTEM, "auto")} and len(engine.seen) == 3
    assert table["prompt"].tolist() == ["1+2="] and summary["pass@1"] == 1.0


def test_registered_pyfunc_renders_its_prompts(qwen):
    from components.registry.pyfunc_policy import POLICY_ARTIFACT, PolicyModel

    _, tok, folder = qwen
    policy = PolicyModel()
    policy.load_context(SimpleNamespace(artifacts={POLICY_ARTIFACT: str(folder)},
                                        model_config={"max_new_tokens": 4, "chat_template": "auto"}))
    policy.engine = _Recorder(policy.engine.tokenizer)
    out = policy.predict(None, pd.DataFrame({"prompt": ["1+2="]}))
    assert policy.engine.seen == [chat.render_prompt(tok, "1+2=", None, "auto")]
    assert out["answer"].tolist() == ["3"]
