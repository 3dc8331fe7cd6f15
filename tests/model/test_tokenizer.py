"""The character tokenizer: a round trip of whitespace and LaTeX."""

from components.model.tokenizer import build_char_tokenizer


def test_char_tokenizer_round_trips_whitespace_and_latex():
    tok = build_char_tokenizer()
    text = "12 + 7 =\n\\boxed{19}"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
