"""The lm-eval bridge: runs the suite's tasks on one causal LM and turns lm-eval's output and logged
samples into tidy, provenance-stamped result rows (bits per byte; chrF++ and BLEU via sacrebleu)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from . import provenance, schema, store
from .corpus import Corpus
from .tasks import TaskSpec, lm_eval_config, task_docs, task_specs

for _name in ("lm-eval", "lm_eval", "datasets", "transformers"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def pick_device(device: str | None = None) -> str:
    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def bleu_tokenizer(suite: dict, lang: str) -> str:
    table = suite["tasks"]["mt"]["bleu_tokenize"]
    return table.get(lang, table["default"])


def score_translations(hyps: list[str], refs: list[str], bleu_tokenize: str) -> list[dict]:
    """Corpus chrF++ (chrF, char order 6, word order 2) and BLEU, each with its sacrebleu signature."""
    from sacrebleu.metrics import BLEU, CHRF

    chrf = CHRF(word_order=2)
    bleu = BLEU(tokenize=bleu_tokenize)
    c = chrf.corpus_score(hyps, [refs])
    b = bleu.corpus_score(hyps, [refs])
    return [{"metric": "chrf++", "value": float(c.score), "signature": str(chrf.get_signature())},
            {"metric": "bleu", "value": float(b.score), "signature": str(bleu.get_signature())}]


def load_model(path: Path, device: str, dtype: str):
    """A local Hugging Face causal LM, from safetensors only and never with remote code."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False,
                                                 dtype=torch_dtype).to(device).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    return model, tok


def build_tasks(suite: dict, corpus: Corpus, limit: int | None = None) -> tuple[list[TaskSpec], dict]:
    """lm-eval's task dict for the whole suite; built once and reused for every model."""
    from lm_eval.tasks import TaskManager

    specs = task_specs(suite)
    configs = [lm_eval_config(s, suite, task_docs(s, suite, corpus, limit)) for s in specs]
    return specs, TaskManager(include_defaults=False).load(configs)


def run_tasks(model, tok, specs: list[TaskSpec], task_dict: dict, suite: dict, device: str, batch_size: int) -> list[dict]:
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device, add_bos_token=False,
              max_length=model.config.max_position_embeddings)
    out = evaluator.evaluate(lm, task_dict, bootstrap_iters=0, log_samples=True)
    rows = []
    for s in specs:
        samples = out["samples"][s.lm_eval_name]
        if s.kind == "lm":
            value = out["results"][s.lm_eval_name]["bits_per_byte,none"]
            rows.append({"task": s.name, "language": s.language, "metric": "bits_per_byte", "value": float(value),
                         "n": len(samples), "higher_is_better": False})
        else:
            samples = sorted(samples, key=lambda r: r["doc_id"])
            hyps = [r["filtered_resps"][0].strip() if isinstance(r["filtered_resps"][0], str)
                    else r["filtered_resps"][0][0].strip() for r in samples]
            refs = [r["doc"]["ref"] for r in samples]
            for m in score_translations(hyps, refs, bleu_tokenizer(suite, s.language)):
                rows.append({"task": s.name, "language": s.language, **m, "n": len(samples), "higher_is_better": True})
    return rows


def model_info(path: Path, name: str, kind: str, **extra) -> schema.ModelInfo:
    from .family.build import model_hash, weight_hashes

    return schema.ModelInfo(name=name, kind=kind, sha256=model_hash(path), weights=weight_hashes(path), **extra)


def is_current(results_path: Path, info: schema.ModelInfo, suite: dict, limit: int | None) -> bool:
    """A stored result is reused only for the same model bytes, suite definition, task versions and limit."""
    if not results_path.exists():
        return False
    try:
        old = schema.ResultsFile.model_validate(store.read_json(results_path))
    except (ValueError, OSError):
        return False
    return (old.status == "ok" and old.model.sha256 == info.sha256 and old.suite_sha256 == suite["sha256"]
            and old.provenance.limit == limit)


def evaluate_to_file(path: Path, info: schema.ModelInfo, results_path: Path, suite: dict, specs, task_dict,
                     device: str, dtype: str, batch_size: int, limit: int | None, merge: dict | None = None) -> schema.ResultsFile:
    t0 = time.perf_counter()
    torch.manual_seed(suite["seed"])
    model, tok = load_model(path, device, dtype)
    rows = run_tasks(model, tok, specs, task_dict, suite, device, batch_size)
    result = schema.ResultsFile(
        suite=suite["id"], suite_sha256=suite["sha256"], tasks={s.name: s.version for s in specs}, model=info,
        provenance=schema.Provenance(
            harness_version=provenance.harness_version(), git=provenance.git_hash(), packages=provenance.packages(),
            device=device if device == "cpu" else f"{device}:{torch.cuda.get_device_name()}", dtype=dtype,
            batch_size=batch_size, seed=suite["seed"], created_utc=provenance.now_utc(),
            wall_s=round(time.perf_counter() - t0, 3), limit=limit, merge=merge),
        rows=[schema.ResultRow(**r) for r in rows])
    store.write_json(results_path, result.model_dump(mode="json"))
    return result
