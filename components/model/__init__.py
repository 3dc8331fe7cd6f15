"""Policy models: the embedded tiny char-level Llama and any Hugging Face causal LM."""
