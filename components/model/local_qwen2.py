"""A real-architecture test model built offline: random Qwen2 weights and a BPE tokenizer trained here.

The tiny Llama of the embedded default has a character tokenizer whose EOS is also its end of turn.
Real chat models differ in ways a pipeline can get wrong, and this folder reproduces them without a hub:

- Byte-level BPE (digits one per token, as Qwen2 splits them) with the special tokens of a Qwen
  *base* model: `<|endoftext|>` is the tokenizer's eos and pad, `<|im_start|>`/`<|im_end|>` mark turns,
  and there is no BOS.
- A ChatML chat template. A turn ends with `<|im_end|>`, which is not `tokenizer.eos_token_id`: only
  generation_config.json's eos list ([im_end, endoftext]) stops generation at the end of a turn, so a
  pipeline that stops on the tokenizer's eos alone runs past it (vLLM and `generate` read the list).
- A padded vocabulary: the embedding has max(shape's vocab, len(tokenizer)) rows, as Qwen2.5 has
  151,936 rows over about 151,665 tokens, so a random model samples ids that have no token.
  Decoding such ids does not raise: `decode`/`batch_decode` (and the tokenizers DecodeStream vLLM uses)
  skip them, which is what a Qwen tokenizer does with its padding rows too. We keep that behaviour
  rather than add filler tokens, so the pipeline meets the same tokenizer a real Qwen folder gives it.
  The corpus gives about 620 tokens, so `test`'s 2048 rows are mostly padding: an untrained model's
  samples are mostly such ids (decoded to nothing) until SFT pushes their logits down.

Usage: `python -m components.model.local_qwen2 OUT_DIR [--shape test|bench12m|qwen2.5-0.5b] [--seed N]`.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_SPLIT

from components.data.worked_solution import format_prompt, format_solution

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
# BPE target size: the task corpus is small, so merges run out well before the embedding rows do.
BPE_VOCAB = 1536
CORPUS_SIZE = 2000

# ChatML: every message is a turn closed by <|im_end|>; the generation prompt opens the assistant's.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_COMMON = dict(hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False)
SHAPES: dict[str, dict] = {
    # a few hundred k parameters: trains in seconds on a CPU
    "test": dict(_COMMON, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=384, vocab_size=2048, max_position_embeddings=512,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    # ~12.1 M parameters, 8.2 M of them the 32k-row embedding (intermediate 1024 brings the rest to ~12 M)
    "bench12m": dict(_COMMON, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=1024, vocab_size=32000, max_position_embeddings=1024,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    # Qwen2.5-0.5B's shape (494 M parameters) with random weights, for GPU throughput tests
    "qwen2.5-0.5b": dict(_COMMON, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
                         max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
}

# Plain English the pipeline's prompts may hold (system prompts, role names), so merges cover it too.
INSTRUCTIONS = [
    "You are a careful calculator. Put the final answer in \\boxed{}.",
    "You are a helpful assistant.",
    "Solve the problem step by step, then put the final answer in \\boxed{}.",
    "Add and subtract the numbers from left to right, one column at a time.",
    "Write the units column first, then the tens column with the carry.",
    "When the top digit is smaller, borrow ten from the next column.",
    "What is the value of the expression? Show your working.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Check the result before you answer. If a step is wrong, correct it.",
    "The answer is a whole number, which may be negative.",
    "Answer the question below with a short explanation and a single number.",
    "Read the question carefully. Think about each step, then give the answer.",
    "system",
    "user",
    "assistant",
]
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _in_words(n: int) -> str:
    """English for -999..999, e.g. -47 -> "negative forty-seven"."""
    if n < 0:
        return "negative " + _in_words(-n)
    if n >= 100:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + (f" and {_in_words(rest)}" if rest else "")
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")


def _expression(rng: random.Random) -> tuple[list[int], list[str], int]:
    """A chain_sum-style expression of 2-3 terms of 1-2 digits: ([47, 38, 5], ["+", "-"], 80)."""
    terms = [rng.randint(0, 99) for _ in range(rng.choice((2, 2, 3)))]
    ops = [rng.choice("+-") for _ in terms[1:]]
    value = terms[0] + sum(t if op == "+" else -t for op, t in zip(ops, terms[1:]))
    return terms, ops, value


def default_corpus(n: int, seed: int) -> list[str]:
    """Tokenizer training text: n chain_sum prompts with worked solutions, the same sums in words, and
    instruction lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        terms, ops, value = _expression(rng)
        prompt = format_prompt(str(terms[0]) + "".join(f"{op}{t}" for op, t in zip(ops, terms[1:])))
        spoken = _in_words(terms[0]) + "".join(
            f" {'plus' if op == '+' else 'minus'} {_in_words(t)}" for op, t in zip(ops, terms[1:]))
        lines += [prompt, format_solution(prompt, str(value)), f"{spoken} equals {_in_words(value)}.",
                  INSTRUCTIONS[i % len(INSTRUCTIONS)]]
    return lines


def train_tokenizer(corpus: Iterable[str], vocab_size: int = BPE_VOCAB) -> PreTrainedTokenizerFast:
    """Byte-level BPE over the corpus; every byte is in the alphabet, so no text is ever unknown."""
    core = Tokenizer(models.BPE())
    # transformers' AutoTokenizer rebuilds every qwen2 folder's tokenizer as Qwen2Tokenizer, with NFC and
    # Qwen2's split (one digit per piece); training with the same steps makes both load paths agree.
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        # as in Qwen folders: stripping spaces before punctuation would corrupt BPE text (transformers 5
        # ignores True for BPE, with a warning)
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def shape_config(shape: str, tokenizer_len: int, endoftext_id: int | None) -> Qwen2Config:
    """The shape's Qwen2Config, with the embedding padded up to the shape's vocab when the tokenizer is smaller."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {sorted(SHAPES)}")
    kwargs = dict(SHAPES[shape])
    kwargs["vocab_size"] = max(kwargs["vocab_size"], tokenizer_len)
    return Qwen2Config(**kwargs, bos_token_id=None, eos_token_id=endoftext_id, pad_token_id=endoftext_id,
                       dtype="float32")


def build_local_qwen2(out_dir, shape: str = "test", *, corpus: Iterable[str] | None = None, seed: int = 0) -> Path:
    """Write a Hugging Face folder (safetensors, tokenizer, chat template, generation config); return it."""
    out = Path(out_dir)
    tok = train_tokenizer(default_corpus(CORPUS_SIZE, seed) if corpus is None else corpus)
    endoftext, im_end = tok.convert_tokens_to_ids(ENDOFTEXT), tok.convert_tokens_to_ids(IM_END)
    config = shape_config(shape, len(tok), endoftext)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    # The chat's end of turn comes first: the list, not the config's single eos, is what stops a turn.
    model.generation_config = GenerationConfig(eos_token_id=[im_end, endoftext], pad_token_id=endoftext)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = build_local_qwen2(args.out_dir, args.shape, seed=args.seed)
    with torch.device("meta"):
        n_params = sum(p.numel() for p in Qwen2ForCausalLM(Qwen2Config.from_pretrained(out)).parameters())
    print(f"{out}  {args.shape}: {n_params:,} parameters")


if __name__ == "__main__":
    main()
