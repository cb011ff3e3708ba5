"""The babel-mini model family: a shared tokenizer and tiny LLaMA-style models trained from scratch."""
