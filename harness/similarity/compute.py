"""The similarity stage: hidden states on the probe set (parallel test verses, the same verses in every
language) and layer-wise linear CKA for each merge's constituent pairs and merge-constituent pairs."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from .. import store
from ..corpus import Corpus
from ..tasks import spaced
from .cka import layerwise

PROBE_VERSION = "probe-v1"
PROBE_VERSES_PER_LANG = 16


def probe_texts(corpus: Corpus, languages: list[str], per_lang: int = PROBE_VERSES_PER_LANG) -> list[str]:
    """The same `per_lang` test verses (evenly spaced) in every language, language by language."""
    out = []
    for lang in languages:
        verses = corpus.texts(lang, "test")
        out += [verses[i] for i in spaced(len(verses), per_lang)]
    return out


def probe_sha(texts: list[str]) -> str:
    return store.sha256_obj({"v": PROBE_VERSION, "texts": texts})


@torch.no_grad()
def hidden_states(path: Path, texts: list[str], device: str = "cpu") -> list[torch.Tensor]:
    """Per layer (embeddings output, then each block), all probe tokens stacked: a list of (n_tokens, width)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False,
                                                 dtype=torch.float32).to(device).eval()
    per_layer: list[list[torch.Tensor]] | None = None
    for text in texts:
        ids = torch.tensor([[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]], device=device)
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        if per_layer is None:
            per_layer = [[] for _ in hs]
        for i, h in enumerate(hs):
            per_layer[i].append(h[0, 1:].float().cpu())  # drop the BOS position: identical input everywhere
    return [torch.cat(chunks) for chunks in per_layer]


class SimilarityCache:
    """Layer-wise CKA per model pair, cached under $BABELMERGE_HOME by the two model hashes and the probe."""

    def __init__(self, texts: list[str], device: str = "cpu"):
        self.texts, self.device = texts, device
        self.sha = probe_sha(texts)
        self.root = store.home() / "similarity" / f"{PROBE_VERSION}-{self.sha[:12]}"
        self._acts: dict[str, list[torch.Tensor]] = {}

    def _acts_of(self, sha: str, path: Path) -> list[torch.Tensor]:
        if sha not in self._acts:
            self._acts[sha] = hidden_states(path, self.texts, self.device)
        return self._acts[sha]

    def cka(self, a: tuple[str, Path], b: tuple[str, Path]) -> list[float]:
        """a, b: (model sha256, checkpoint path). Symmetric; cached on disk."""
        (sa, pa), (sb, pb) = sorted([a, b])
        f = self.root / f"cka_linear-{sa[:16]}-{sb[:16]}.json"
        if f.exists():
            return store.read_json(f)["values"]
        values = layerwise(self._acts_of(sa, pa), self._acts_of(sb, pb))
        store.write_json(f, {"a": sa, "b": sb, "probe": PROBE_VERSION, "probe_sha256": self.sha, "values": values})
        return values


def merge_similarity_rows(cache: SimilarityCache, merge: tuple[str, str, Path],
                          constituents: list[tuple[str, str, Path]]) -> list[dict]:
    """Tidy rows: CKA per layer for every constituent pair, and between the merge and each constituent.
    merge, constituents: (name, sha256, path)."""
    rows = []

    def add(x, y, relation):
        for layer, v in enumerate(cache.cka((x[1], x[2]), (y[1], y[2]))):
            rows.append({"metric": "cka_linear", "a": x[0], "b": y[0], "a_sha256": x[1], "b_sha256": y[1],
                         "relation": relation, "layer": layer, "value": v, "probe": PROBE_VERSION})

    for x, y in itertools.combinations(constituents, 2):
        add(x, y, "constituents")
    for c in constituents:
        add(merge, c, "merge-constituent")
    return rows
