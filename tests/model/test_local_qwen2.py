"""The locally built Qwen2 folder behaves like a real Qwen base model's: ChatML turns, an end of turn that is
not the tokenizer's EOS, a padded vocabulary, and it loads through the repo's loader and the Auto classes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen2ForCausalLM

from components.model.factory import load_policy
from components.model.local_qwen2 import (ENDOFTEXT, IM_END, IM_START, build_local_qwen2, default_corpus, main,
                                          shape_config)
from tests.support.local_qwen2 import CHAT, RENDERED, SYSTEM


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_local_qwen2(tmp_path_factory.mktemp("local_qwen2") / "test", "test", seed=0)


@pytest.fixture(scope="module")
def policy(folder):
    return load_policy(folder)


def meta_model(shape: str) -> Qwen2ForCausalLM:
    """The shape's model on the meta device: its config and parameter count without allocating weights."""
    with torch.device("meta"):
        return Qwen2ForCausalLM(shape_config(shape, tokenizer_len=1000, endoftext_id=0))


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_chat_template_renders_chatml_and_opens_the_assistant_turn(policy):
    _, tok = policy
    text = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert text == RENDERED
    assert text.endswith("<|im_start|>assistant\n") and SYSTEM in text
    assert tok.apply_chat_template(CHAT, tokenize=False) == RENDERED.removesuffix("<|im_start|>assistant\n")


def test_turn_markers_are_single_special_ids(policy):
    _, tok = policy
    ids = tok(RENDERED, add_special_tokens=False)["input_ids"]
    im_start, im_end = tok.convert_tokens_to_ids([IM_START, IM_END])
    assert ids.count(im_start) == 3 and ids.count(im_end) == 2
    assert ids[0] == im_start  # no BOS: the text starts with the first turn
    assert tok.bos_token is None
    assert {IM_START, IM_END} <= set(tok.all_special_tokens)  # skipped by skip_special_tokens, as in Qwen
    assert IM_START not in tok.decode(ids, skip_special_tokens=True)


def test_end_of_turn_is_not_the_tokenizer_eos(policy):
    model, tok = policy
    im_end = tok.convert_tokens_to_ids(IM_END)
    assert tok.eos_token == tok.pad_token == ENDOFTEXT
    assert im_end != tok.eos_token_id
    assert model.config.eos_token_id == model.config.pad_token_id == tok.eos_token_id


def test_generation_config_stops_on_end_of_turn_and_endoftext(folder, policy):
    _, tok = policy
    gen = GenerationConfig.from_pretrained(folder)
    assert gen.eos_token_id == [tok.convert_tokens_to_ids(IM_END), tok.eos_token_id]
    assert gen.pad_token_id == tok.eos_token_id


def test_task_text_round_trips_through_encode_and_decode(policy):
    # spaces before punctuation included: decode must not "clean them up"
    _, tok = policy
    for line in default_corpus(40, seed=1) + [RENDERED, "  -47 + 38 =\n\n x", "47 , 38 . so it's 85 !"]:
        ids = tok(line, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == line
    assert len(tok("47+38=", add_special_tokens=False)["input_ids"]) == 6  # one token per digit


def test_padded_vocabulary_ids_decode_without_raising(policy):
    model, tok = policy
    assert model.config.vocab_size == 2048 > len(tok)
    known = tok("47+38=", add_special_tokens=False)["input_ids"]
    padded = [len(tok), model.config.vocab_size - 1]  # embedding rows with no token
    assert tok.decode(known + padded) == "47+38="
    assert tok.batch_decode([padded + known, padded], skip_special_tokens=True) == ["47+38=", ""]


def test_vocab_grows_to_the_tokenizer_when_the_shape_is_smaller():
    assert shape_config("test", tokenizer_len=5000, endoftext_id=0).vocab_size == 5000
    assert shape_config("test", tokenizer_len=600, endoftext_id=0).vocab_size == 2048


def test_auto_classes_load_the_same_tokenizer_and_model(folder, policy):
    _, tok = policy
    auto = AutoTokenizer.from_pretrained(folder)
    assert auto.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) == RENDERED
    for text in [RENDERED] + default_corpus(20, seed=2):
        assert auto(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert isinstance(AutoModelForCausalLM.from_pretrained(folder), Qwen2ForCausalLM)


def test_forward_pass_gives_logits_over_every_embedding_row(policy):
    model, tok = policy
    batch = tok([RENDERED, "47+38="], add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], 2048)
    assert torch.isfinite(logits).all()


def test_same_seed_builds_the_same_folder(folder, tmp_path):
    again = build_local_qwen2(tmp_path / "again", "test", seed=0)
    a, b = AutoModelForCausalLM.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(again)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert (folder / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()


def test_cli_writes_the_folder_and_prints_the_parameter_count(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--shape", "test", "--seed", "3"])
    out = capsys.readouterr().out
    assert str(tmp_path / "cli") in out and "656,512 parameters" in out
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["model_type"] == "qwen2"


def test_bench12m_has_about_12m_parameters():
    model = meta_model("bench12m")
    assert model.config.vocab_size == 32000 and model.config.hidden_size == 256
    assert abs(n_params(model) - 12e6) <= 0.15 * 12e6


def test_qwen25_05b_shape_matches_qwen25_05b():
    model = meta_model("qwen2.5-0.5b")
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.vocab_size, c.tie_word_embeddings) == (896, 24, 14, 2, 4864, 151936, True)
    assert c.rope_parameters["rope_theta"] == 1e6 and c.max_position_embeddings == 32768
    assert 480e6 <= n_params(model) <= 510e6
