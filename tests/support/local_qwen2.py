"""A system prompt and a user turn, and the ChatML text the local Qwen2 test model's chat template renders for
them (components/model/local_qwen2.py), in the main environment and in the vLLM one."""

SYSTEM = "You are a careful calculator. Put the final answer in \\boxed{}."
CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "47+38="}]
RENDERED = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n47+38=<|im_end|>\n<|im_start|>assistant\n"
