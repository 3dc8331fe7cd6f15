"""The vLLM environment pins an older transformers (< 5.20): the local Qwen2 test model's chat template
and special tokens must load there exactly as in the main environment."""

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from components.model.local_qwen2 import build_local_qwen2
from tests.support.local_qwen2 import CHAT, RENDERED


def test_the_chat_template_loads_with_the_vllm_environments_transformers(tmp_path):
    folder = build_local_qwen2(tmp_path / "qwen2", "test", seed=0)
    for load in (AutoTokenizer, PreTrainedTokenizerFast):
        tok = load.from_pretrained(folder)
        assert tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) == RENDERED
        assert tok.convert_tokens_to_ids("<|im_end|>") != tok.eos_token_id
