"""The suite's tasks, generated in Python over its language list (no file per language), as lm-eval
task configs: `lm:<lang>` (rolling log-likelihood -> bits per byte) and `mt:en-<x>` (greedy generation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..corpus import Corpus


@dataclass(frozen=True)
class TaskSpec:
    name: str           # suite name, e.g. "lm:de" or "mt:en-ru"
    kind: str           # "lm" | "mt"
    language: str       # the language scored (the target for mt)
    version: int

    @property
    def lm_eval_name(self) -> str:
        return "babel_" + self.name.replace(":", "_").replace("-", "_")


def task_specs(suite: dict) -> list[TaskSpec]:
    specs = [TaskSpec(f"lm:{l}", "lm", l, suite["tasks"]["lm"]["version"]) for l in suite["languages"]]
    specs += [TaskSpec(f"mt:{suite['pivot']}-{x}", "mt", x, suite["tasks"]["mt"]["version"])
              for x in suite["languages"] if x != suite["pivot"]]
    return specs


def spaced(n_total: int, n: int) -> list[int]:
    """n indices evenly spaced over range(n_total), first and last included."""
    if n >= n_total:
        return list(range(n_total))
    return sorted(set(np.linspace(0, n_total - 1, n).round().astype(int).tolist()))


def task_docs(spec: TaskSpec, suite: dict, corpus: Corpus, limit: int | None = None) -> list[dict]:
    cfg = suite["tasks"][spec.kind]
    n = min(cfg["n"], limit) if limit else cfg["n"]
    if spec.kind == "lm":
        verses = corpus.verses(spec.language, cfg["split"])
        return [{"id": verses[i]["id"], "text": verses[i]["text"]} for i in spaced(len(verses), n)]
    src = corpus.verses(suite["pivot"], cfg["split"])
    tgt = corpus.verses(spec.language, cfg["split"])
    docs = []
    for i in spaced(len(src), n):
        assert src[i]["id"] == tgt[i]["id"], "corpus files are not verse-aligned"
        prompt = cfg["prompt"].format(src_lang=suite["pivot"], tgt_lang=spec.language, src=src[i]["text"])
        docs.append({"id": src[i]["id"], "src": src[i]["text"], "ref": tgt[i]["text"], "prompt": prompt})
    return docs


# Plain functions, not Jinja strings: lm-eval compiles a template string anew for every document.
def _empty(doc: dict) -> str:
    return ""


def _text(doc: dict) -> str:
    return doc["text"]


def _prompt(doc: dict) -> str:
    return doc["prompt"]


def _ref(doc: dict) -> str:
    return doc["ref"]


def lm_eval_config(spec: TaskSpec, suite: dict, docs: list[dict]) -> dict:
    """An lm-eval task config whose data is the in-memory `docs` (nothing is downloaded)."""
    import datasets

    def custom_dataset(**_):
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})

    base = {"task": spec.lm_eval_name, "custom_dataset": custom_dataset, "test_split": "test",
            "metadata": {"version": spec.version}}
    if spec.kind == "lm":
        return {**base, "output_type": "loglikelihood_rolling", "doc_to_text": _empty, "doc_to_target": _text,
                "metric_list": [{"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False}]}
    cfg = suite["tasks"]["mt"]
    return {**base, "output_type": "generate_until", "doc_to_text": _prompt, "doc_to_target": _ref,
            # lm-eval's own metric is a placeholder: chrF++/BLEU are computed from the logged samples with a
            # tokenizer chosen per target language (evaluate.score_translations).
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            "generation_kwargs": {"until": list(cfg["until"]), "do_sample": False, "max_gen_toks": cfg["max_gen_toks"]}}
