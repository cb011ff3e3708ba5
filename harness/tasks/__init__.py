"""The suite's tasks, generated in Python over its language list (no file per language), as lm-eval
task configs: `lm:<lang>` (rolling log-likelihood -> bits per byte) and `mt:en-<x>`: greedy generation and
teacher-forced log-likelihood of the reference (for XMI, Bugliarello et al. 2020), each for the real source and
for a source-shuffled control (another test document's source, by a seeded derangement). Each suite kind
(`kind:` in its YAML; babel-mini by default) registers how it makes specs, documents and configs."""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..corpus import Corpus


@dataclass(frozen=True)
class TaskSpec:
    name: str           # suite name, e.g. "lm:de" or "mt:en-ru"
    kind: str           # "lm" | "mt"
    language: str       # the language scored (the target for mt)
    version: int
    source: str | None = None        # mt on real data: the source language (babel-mini: the suite's pivot)
    shots: int = 0                   # mt on real data: in-context examples before the prompt
    lm_eval_task: str | None = None  # a task lm-eval ships (belebele_<lang>), used under its own name

    @property
    def lm_eval_name(self) -> str:
        return self.lm_eval_task or "babel_" + re.sub(r"[^A-Za-z0-9]", "_", self.name)

    @property
    def xmi_name(self) -> str:
        """mt tasks: the lm-eval task scoring the reference teacher-forced (real and shuffled source)."""
        return self.lm_eval_name + "_xmi"


KINDS: dict[str, dict[str, callable]] = {}


def register(kind: str, role: str):
    """Register a suite kind's `specs(suite)`, `docs(spec, suite, source, limit)` or `configs(spec, suite, docs)`."""
    def deco(fn):
        KINDS.setdefault(kind, {})[role] = fn
        return fn
    return deco


def _kind(suite: dict) -> dict[str, callable]:
    kind = suite.get("kind", "babel-mini")
    if kind not in KINDS:
        raise ValueError(f"suite {suite.get('id')}: field 'kind' is '{kind}'; use one of {', '.join(KINDS)}")
    return KINDS[kind]


def task_specs(suite: dict) -> list[TaskSpec]:
    return _kind(suite)["specs"](suite)


def task_docs(spec: TaskSpec, suite: dict, source, limit: int | None = None) -> list[dict]:
    """A task's documents; source: the Corpus (babel-mini) or the data folder (data.DataDir) it reads."""
    return _kind(suite)["docs"](spec, suite, source, limit)


def lm_eval_configs(spec: TaskSpec, suite: dict, docs: list[dict]) -> list[dict]:
    return _kind(suite)["configs"](spec, suite, docs)


@register("babel-mini", "specs")
def babel_specs(suite: dict) -> list[TaskSpec]:
    specs = [TaskSpec(f"lm:{l}", "lm", l, suite["tasks"]["lm"]["version"]) for l in suite["languages"]]
    specs += [TaskSpec(f"mt:{suite['pivot']}-{x}", "mt", x, suite["tasks"]["mt"]["version"])
              for x in suite["languages"] if x != suite["pivot"]]
    return specs


def spaced(n_total: int, n: int) -> list[int]:
    """n indices evenly spaced over range(n_total), first and last included."""
    if n >= n_total:
        return list(range(n_total))
    return sorted(set(np.linspace(0, n_total - 1, n).round().astype(int).tolist()))


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (n >= 2): Sattolo's algorithm (1986) draws a
    uniformly random single n-cycle, so every document is paired with another one."""
    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: the swap never leaves i in place
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def control_seed(suite: dict, task: str) -> int:
    """The seed of a task's control permutation: fixed by the suite's seed and the task's name."""
    return zlib.crc32(f"{suite['seed']}:{task}".encode())


@register("babel-mini", "docs")
def babel_docs(spec: TaskSpec, suite: dict, corpus: Corpus, limit: int | None = None) -> list[dict]:
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
        docs.append({"id": src[i]["id"], "src": src[i]["text"], "ref": tgt[i]["text"]})
    return with_controls(docs, spec, suite)


def with_controls(docs: list[dict], spec: TaskSpec, suite: dict, fmt=None) -> list[dict]:
    """MT documents ({id, src, ref}) with their prompts and the source-shuffled control: document i's control
    prompt carries the source of document perm[i] (a derangement), its reference stays its own. fmt(src): the
    prompt for a source (default: the babel-mini suite's template)."""
    fmt = fmt or (lambda src: suite["tasks"]["mt"]["prompt"].format(src_lang=suite["pivot"], tgt_lang=spec.language, src=src))
    perm = derangement(len(docs), control_seed(suite, spec.name)) if len(docs) > 1 else [0] * len(docs)
    return [{**d, "prompt": fmt(d["src"]), "control": perm[i], "control_prompt": fmt(docs[perm[i]]["src"])}
            for i, d in enumerate(docs)]


def variants(docs: list[dict]) -> list[dict]:
    """The lm-eval documents of an mt task: every document with its real prompt, then every one with its
    control prompt (doc_id i and n + i belong to document i)."""
    return ([{"id": d["id"], "variant": "source", "prompt": d["prompt"], "ref": d["ref"]} for d in docs]
            + [{"id": d["id"], "variant": "shuffled", "prompt": d["control_prompt"], "ref": d["ref"]} for d in docs])


# Plain functions, not Jinja strings: lm-eval compiles a template string anew for every document.
def _empty(doc: dict) -> str:
    return ""


def _text(doc: dict) -> str:
    return doc["text"]


def _prompt(doc: dict) -> str:
    return doc["prompt"]


def _ref(doc: dict) -> str:
    return doc["ref"]


def _continuation(doc: dict) -> str:
    """The teacher-forced target: exactly what the family's translation fine-tuning scores after the prompt."""
    return " " + doc["ref"]


@register("babel-mini", "configs")
def generated_configs(spec: TaskSpec, suite: dict, docs: list[dict]) -> list[dict]:
    """The lm-eval task configs of one suite task, whose data are the in-memory `docs` (nothing is downloaded):
    lm: one rolling log-likelihood task; mt: greedy generation and teacher-forced log-likelihood, each over the
    real and the control prompts (variants)."""
    import datasets

    def config(name: str, rows: list[dict], **kw) -> dict:
        def custom_dataset(**_):
            return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})

        return {"task": name, "custom_dataset": custom_dataset, "test_split": "test", "metadata": {"version": spec.version}, **kw}

    if spec.kind == "lm":
        return [config(spec.lm_eval_name, docs, output_type="loglikelihood_rolling", doc_to_text=_empty, doc_to_target=_text,
                       metric_list=[{"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False}])]
    cfg, rows = suite["tasks"]["mt"], variants(docs)
    # lm-eval's own metrics are placeholders: every score is computed from the logged samples (evaluate.run_task)
    return [config(spec.lm_eval_name, rows, output_type="generate_until", doc_to_text=_prompt, doc_to_target=_ref,
                   metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
                   generation_kwargs={"until": list(cfg["until"]), "do_sample": False, "max_gen_toks": cfg["max_gen_toks"]}),
            config(spec.xmi_name, rows, output_type="loglikelihood", doc_to_text=_prompt, doc_to_target=_continuation,
                   target_delimiter="", metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}])]


from . import belebele, flores  # noqa: E402,F401  (each registers its suite kind)
