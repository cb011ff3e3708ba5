"""Fixtures: tiny LLaMA checkpoints and a tokenizer built in a temporary folder, so unit tests need neither
the corpus package nor a trained family."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/sitefixtures.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "Im Anfang schuf Gott die Himmel und die Erde.",
    "Au commencement, Dieu créa les cieux et la terre.",
    "В начале сотворил Бог небо и землю.",
    "في البدء خلق الله السموات والارض.",
    "en: And God said, Let there be light\nde: Und Gott sprach: Es werde Licht",
]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own cache root: nothing leaks into ~/.cache or between tests."""
    monkeypatch.setenv("BABELMERGE_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from harness.family.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    tok = train_tokenizer({"x": TEXTS * 4}, vocab_size=300, per_lang=100)
    tok.save_pretrained(str(d))
    return d


def make_model(path: Path, tokenizer_dir: Path, seed: int, layers: int = 2, hidden: int = 32) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger random weights than the init, so logits are far from uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.lm_head.weight.mul_(30.0)
    model.save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizer_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    return [make_model(root / f"m{s}", tokenizer_dir, seed=s) for s in range(3)]
