"""The evaluation engine: runs each suite task through lm-eval on one causal LM (the babelmerge backend by
default), as resumable (model, task) units cached by model hash, suite hash and task version; turns each
unit's per-document statistics into tidy rows with bootstrap intervals; records faults as failed results."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import identity, provenance, schema, scoring, store
from .corpus import Corpus
from .sources import DTYPES, ModelFault, load_model  # noqa: F401 (re-exported: the evaluation stage's API)
from .tasks import TaskSpec, lm_eval_configs, task_docs, task_specs
from .tasks.flores import lid_code

for _name in ("lm-eval", "lm_eval", "datasets", "transformers"):
    logging.getLogger(_name).setLevel(logging.ERROR)

UNIT_FORMAT = 2  # bump when what a unit file holds changes: older units are then recomputed


def pick_device(device: str | None = None) -> str:
    if device and device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is visible; use --device cpu")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def flores200_installed() -> bool:
    """Whether sacrebleu's FLORES-200 SentencePiece model is on this machine (sacrebleu would download it)."""
    from sacrebleu.utils import SACREBLEU_DIR

    return (Path(SACREBLEU_DIR) / "models" / "flores200sacrebleuspm").is_file()


def bleu_tokenizer(suite: dict, lang: str) -> str:
    table = suite["tasks"]["mt"]["bleu_tokenize"]
    if table.get("spm") and flores200_installed():
        return table["spm"]  # the same tokenizer for every target, where installed; never downloaded implicitly
    tok = table.get(lang, table["default"])
    if tok == "ja-mecab":
        try:
            import MeCab  # noqa: F401
        except ImportError:
            tok = "char"  # sacrebleu's ja-mecab needs mecab-python3; fall back to characters, recorded in the signature
    return tok


def make_lm(model, tok, device: str, backend: str = "babelmerge", batch_size: int | None = None,
            batch_tokens: int | None = None):
    """The lm-eval model object: our backend, or lm-eval's stock `hf` one (for comparisons)."""
    if backend == "babelmerge":
        from .backend import BabelLM

        return BabelLM(model=model, tokenizer=tok, device=device, batch_tokens=batch_tokens, gen_batch_size=batch_size or 64)
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size or 16, device=device, add_bos_token=False,
                max_length=model.config.max_position_embeddings)


def vllm_lm(path: Path, dtype: str, seed: int, tensor_parallel: int | None = None, data_parallel: int | None = None):
    """lm-eval's own `vllm` model type (GPU): the same task configs, so the same prompts and stop strings; tensor and
    data parallelism passed through as its model_args. Needs the vllm package, which babelmerge does not pin."""
    from importlib.util import find_spec

    if find_spec("vllm") is None:
        raise ModelFault("--backend vllm: the vllm package is not installed; install lm-eval[vllm] on a CUDA machine "
                         "or use --backend babelmerge")
    from lm_eval.api.registry import get_model

    return get_model("vllm")(**vllm_args(path, dtype, seed, tensor_parallel, data_parallel))


def vllm_args(path: Path, dtype: str, seed: int, tensor_parallel: int | None = None, data_parallel: int | None = None) -> dict:
    """The model_args given to lm-eval's vllm model (pure): no BOS added (as our backend), no remote code."""
    return {"pretrained": str(path), "dtype": dtype, "seed": seed, "tensor_parallel_size": tensor_parallel or 1,
            "data_parallel_size": data_parallel or 1, "add_bos_token": False, "trust_remote_code": False,
            "batch_size": "auto"}


@dataclass
class SuiteTasks:
    """The suite's tasks with their documents and lm-eval task dicts, built once for every model."""

    suite: dict
    specs: list[TaskSpec]
    docs: dict[str, list[dict]]
    task_dicts: dict[str, dict]
    limit: int | None
    data: dict | None = None       # suites on local data: what was read (data.DataDir.provenance)

    @classmethod
    def build(cls, suite: dict, source, limit: int | None = None, only: list[str] | None = None) -> "SuiteTasks":
        """The suite's tasks (or those named in `only`); source: the Corpus, or the data folder (data.DataDir)."""
        from lm_eval.tasks import TaskManager

        specs = [s for s in task_specs(suite) if only is None or s.name in only]
        docs = {s.name: task_docs(s, suite, source, limit) for s in specs}
        tm = TaskManager(include_defaults=False)
        data = source.provenance() if hasattr(source, "provenance") else None
        return cls(suite, specs, docs, {s.name: tm.load(lm_eval_configs(s, suite, docs[s.name])) for s in specs}, limit, data)

    def task_dict(self, spec: TaskSpec) -> dict:
        """lm-eval's task dict for one task: built with the suite, or here for a unit shipped without it
        (SuiteTasks.one)."""
        if spec.name not in self.task_dicts:
            from lm_eval.tasks import TaskManager

            self.task_dicts[spec.name] = TaskManager(include_defaults=False).load(
                lm_eval_configs(spec, self.suite, self.docs[spec.name]))
        return self.task_dicts[spec.name]

    def one(self, spec: TaskSpec) -> "SuiteTasks":
        """Only one task's documents, without lm-eval's objects: what a unit ships to another process."""
        return SuiteTasks(self.suite, [spec], {spec.name: self.docs[spec.name]}, {}, self.limit, self.data)

    @property
    def key(self) -> str:
        """What cached units are keyed by besides the model: the suite, and the bytes of every data file read."""
        return self.suite["sha256"][:12] + (f"-data{store.sha256_obj(self.data['files'])[:12]}" if self.data else "")


# -- one unit: (model, task) -------------------------------------------------------------------------
def _samples(out: dict, name: str) -> list[dict]:
    return sorted(out["samples"][name], key=lambda r: r["doc_id"])


def _ll(sample: dict) -> float:
    """The log-likelihood lm-eval logged for one loglikelihood or rolling request."""
    return float(np.asarray(sample["filtered_resps"][0], dtype=object).reshape(-1)[0])


def run_task(lm, spec: TaskSpec, tasks: SuiteTasks) -> schema.TaskDocs:
    """Per-document statistics of one task for one model, through lm-eval. mt: outputs and sacrebleu statistics
    for the real prompts, for the source-shuffled control prompts, and for the real outputs against the
    permuted references; log-likelihoods of the reference given the real and the shuffled source."""
    from lm_eval import evaluator

    out = evaluator.evaluate(lm, tasks.task_dict(spec), bootstrap_iters=0, log_samples=True)
    docs = tasks.docs[spec.name]
    ids = [d["id"] for d in docs]
    if spec.kind == "lm":
        samples = _samples(out, spec.lm_eval_name)
        return schema.TaskDocs(ids=[docs[r["doc_id"]]["id"] for r in samples], ll=[_ll(r) for r in samples],
                               bytes=[len(docs[r["doc_id"]]["text"].encode("utf-8")) for r in samples])
    if spec.kind == "mc":  # lm-eval's multiple_choice: one (log-likelihood, is_greedy) per choice, target = gold index
        samples = _samples(out, spec.lm_eval_name)
        return schema.TaskDocs(ids=[docs[r["doc_id"]]["id"] for r in samples],
                               choice_ll=[[float(c[0]) for c in r["filtered_resps"]] for r in samples],
                               gold=[int(r["target"]) for r in samples])
    n = len(docs)
    gen = [r["filtered_resps"][0] for r in _samples(out, spec.lm_eval_name)]
    hyps = [(x if isinstance(x, str) else x[0]).strip() for x in gen]
    real, control = hyps[:n], hyps[n:]
    lls = [_ll(r) for r in _samples(out, spec.xmi_name)]
    refs = [d["ref"] for d in docs]
    perm = [d["control"] for d in docs]
    mets = scoring.metrics(bleu_tokenizer(tasks.suite, spec.language))
    stat = lambda hs, rs: {m: scoring.sentence_stats(metric, hs, rs).tolist() for m, metric in mets.items()}
    return schema.TaskDocs(
        ids=ids, hyp=real, lang=scoring.detect_languages(real), stats=stat(real, refs),
        signatures={m: str(metric.get_signature()) for m, metric in mets.items()},
        perm=perm, hyp_control=control, stats_control=stat(control, refs), stats_misaligned=stat(real, [refs[j] for j in perm]),
        ll_given=lls[:n], ll_shuffled=lls[n:], tgt_bytes=[len(r.encode("utf-8")) for r in refs])


def _row(base: dict, metric: str, value, boot: np.ndarray, higher: bool, **extra) -> dict:
    lo, hi, sd = scoring.interval(boot)
    return {**base, "metric": metric, "value": value, "stderr": sd, "ci_low": lo, "ci_high": hi, "higher_is_better": higher,
            **extra}


def task_rows(spec: TaskSpec, d: schema.TaskDocs, suite: dict) -> list[dict]:
    """Tidy rows with bootstrap intervals from one task's per-document statistics (pure). Every interval of one
    task resamples the same documents (scoring.bootstrap_indices), so differences are paired."""
    n = len(d.ids)
    idx = scoring.bootstrap_indices(n, suite["seed"])
    base = {"task": spec.name, "language": spec.language, "n": n}
    if spec.kind == "lm":
        ll, nb = np.asarray(d.ll), np.asarray(d.bytes, dtype=np.float64)
        return [_row(base, "bits_per_byte", scoring.bits_per_byte(ll, nb), scoring.bits_per_byte_boot(ll, nb, idx), False)]
    if spec.kind == "mc":  # accuracy: the choice with the highest log-likelihood is the gold one (lm-eval's acc)
        hit = (np.argmax(np.asarray(d.choice_ll), axis=1) == np.asarray(d.gold)).astype(np.float64)
        return [_row(base, "acc", float(hit.mean()), hit[idx].mean(1), True)]
    rows = []
    for m, metric in scoring.metrics(bleu_tokenizer(suite, spec.language)).items():
        sig = {"signature": d.signatures[m]}
        score = {}
        for suffix, stats in (("", d.stats), ("_control", d.stats_control), ("_misaligned", d.stats_misaligned)):
            if stats is None:
                continue
            st = np.asarray(stats[m])
            score[suffix] = (scoring.corpus_from_stats(metric, st), scoring.corpus_boot(metric, st, idx))
            rows.append(_row(base, m + suffix, score[suffix][0], score[suffix][1], suffix == "", **sig))
        for suffix in ("_control", "_misaligned"):
            if suffix in score:  # the paired difference: both resampled on the same documents
                name = m + "_over" + suffix
                rows.append(_row(base, name, score[""][0] - score[suffix][0], score[""][1] - score[suffix][1], True, **sig))
    if d.ll_given is not None:
        given, shuffled, nb = np.asarray(d.ll_given), np.asarray(d.ll_shuffled), np.asarray(d.tgt_bytes, dtype=np.float64)
        bg, bs = scoring.bits_per_byte(given, nb), scoring.bits_per_byte(shuffled, nb)
        boot_g, boot_s = scoring.bits_per_byte_boot(given, nb, idx), scoring.bits_per_byte_boot(shuffled, nb, idx)
        rows += [_row(base, "bpb_given_source", bg, boot_g, False), _row(base, "bpb_shuffled_source", bs, boot_s, False),
                 _row(base, "xmi", bs - bg, boot_s - boot_g, True)]
    empty, off = scoring.output_rates(d.hyp, d.lang, lid_code(spec.language))
    rows.append(_row(base, "empty_rate", float(empty.mean()), empty[idx].mean(1), False))
    kept = ~empty
    if kept.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (off[idx] * kept[idx]).sum(1) / kept[idx].sum(1)
        rows.append(_row({**base, "n": int(kept.sum())}, "off_target_rate", float(off[kept].mean()), boot[np.isfinite(boot)],
                         False, signature=scoring.LID_MODEL))
    else:
        rows.append({**base, "n": 0, "metric": "off_target_rate", "value": None, "higher_is_better": False,
                     "signature": scoring.LID_MODEL})
    return rows


def unit_dir(model_sha: str, suite: dict, limit: int | None, key: str | None = None) -> Path:
    """key: SuiteTasks.key (the suite and its data files' bytes); default: the suite's hash."""
    return store.home() / "units" / f"f{UNIT_FORMAT}" / model_sha[:24] / f"{key or suite['sha256'][:12]}-limit{limit or 'all'}"


def unit_file(udir: Path, spec: TaskSpec) -> Path:
    """A (model, task) unit's file in its model's unit folder (unit_dir)."""
    return udir / f"{spec.name.replace(':', '_')}-v{spec.version}.json"


_LOADED: dict = {}  # this process's one loaded model (its lm-eval object), or the ModelFault loading it raised


def loaded_lm(path: Path, sha: str, device: str, dtype: str, seed: int, backend: str = "babelmerge",
              batch_size: int | None = None, batch_tokens: int | None = None, parallel: tuple = (None, None)):
    """The model as an lm-eval object, loaded once per process for consecutive units of the same model (a unit
    runner keeps one model; a load failure is kept too, so the model's other units fail at once)."""
    key = (str(path), sha, device, dtype, backend, batch_size, batch_tokens, tuple(parallel))
    if key not in _LOADED:
        _LOADED.clear()
        try:
            if backend == "vllm":
                _LOADED[key] = vllm_lm(path, dtype, seed, *parallel)
            else:
                torch.manual_seed(seed)
                model, tok = load_model(path, device, dtype)
                _LOADED[key] = make_lm(model, tok, device, backend, batch_size, batch_tokens)
        except ModelFault as e:
            _LOADED[key] = e
    if isinstance(_LOADED[key], ModelFault):
        raise ModelFault(str(_LOADED[key]))
    return _LOADED[key]


def release_model() -> None:
    """Drop this process's loaded model (its memory goes back)."""
    _LOADED.clear()


def batch_info(lm, backend: str, device: str) -> dict:
    """What a results file's provenance says about the batches and the device that computed its units."""
    return {"backend": backend, "scoring_tokens": getattr(lm, "batch_tokens", None),
            "generation_rows": getattr(lm, "gen_batch_size", getattr(lm, "batch_size", None)),
            "device": device if device == "cpu" else f"{device}:{torch.cuda.get_device_name()}"}


def compute_unit(path: Path, name: str, sha: str, out: Path, spec: TaskSpec, tasks: SuiteTasks, device: str, dtype: str,
                 batch_size: int | None = None, batch_tokens: int | None = None, backend: str = "babelmerge",
                 parallel: tuple = (None, None)) -> dict | None:
    """One (model, task) unit: the task's per-document statistics written atomically to `out`; nothing when `out`
    exists (idempotent: a unit re-run after its worker died never writes twice). Returns batch_info, or None.
    A load error, non-finite weights or running out of memory raise ModelFault (the unit's own failure)."""
    if out.exists():
        return None
    device = pick_device(device)
    try:
        lm = loaded_lm(path, sha, device, dtype, tasks.suite["seed"], backend, batch_size, batch_tokens, parallel)
        d = run_task(lm, spec, tasks)
    except (MemoryError, torch.OutOfMemoryError):
        raise ModelFault(f"{name}: out of memory on {device}; pass a smaller --batch-size or --batch-tokens") from None
    store.write_json(out, d.model_dump(mode="json"))
    return batch_info(lm, backend, device)


def model_info(path: Path, name: str, kind: str, identity_: str | None = None, **extra) -> schema.ModelInfo:
    """What a results file says about its model: the identity it is reused for (recipe identity for family
    members and merges; the content hash otherwise) and the weight hashes that produced it."""
    weights = identity.weight_hashes(path)
    if not weights:
        raise FileNotFoundError(f"{path}: no .safetensors weight file; a checkpoint must hold model.safetensors")
    sha = identity.content_hash(weights)  # the same value as identity.model_hash, without reading the files again
    return schema.ModelInfo(name=name, kind=kind, identity=identity_ or sha, sha256=sha, weights=weights, **extra)


def docs_path(results_path: Path) -> Path:
    return results_path.with_name(results_path.name[:-len(".json")] + ".docs.json")


def is_current(results_path: Path, model_identity: str, suite: dict, limit: int | None, data: dict | None = None) -> bool:
    """A stored result is reused, on any machine, for the same model identity (identity.py: its recipe, or its
    content for a checkpoint), suite definition, task versions and limit (and, on local data, the same files'
    bytes: `data`, SuiteTasks.data)."""
    if not results_path.exists():
        return False
    try:
        old = schema.ResultsFile.model_validate(store.read_json(results_path))
    except (ValueError, OSError):
        return False
    versions = {s.name: s.version for s in task_specs(suite)}
    return (old.status == "ok" and old.model.identity == model_identity and old.suite_sha256 == suite["sha256"]
            and old.tasks == versions and old.provenance.limit == limit and docs_path(results_path).exists()
            and (data is None or (old.provenance.data or {}).get("files") == data["files"]))


def _provenance(device, dtype, batch: dict | None, backend, t0, limit, merge, suite, dirty: bool = False,
                data: dict | None = None) -> schema.Provenance:
    """batch: batch_info of a unit computed for this file (its device too); None when every unit was cached."""
    batch = dict(batch or batch_info(None, backend, device))
    return schema.Provenance(
        harness_version=provenance.harness_version(), git=provenance.git_hash(), packages=provenance.packages(),
        device=batch.pop("device"), dtype=dtype, batch=batch,
        seed=suite["seed"], created_utc=provenance.now_utc(), wall_s=round(time.perf_counter() - t0, 3), limit=limit,
        merge=merge, bootstrap=scoring.N_BOOT, lid_model=scoring.LID_MODEL, dirty=dirty, data=data)


def evaluate_to_file(path: Path, info: schema.ModelInfo, results_path: Path, tasks: SuiteTasks, device: str,
                     dtype: str, batch_size: int | None = None, batch_tokens: int | None = None,
                     merge: dict | None = None, backend: str = "babelmerge", log=print,
                     dirty: bool = False, parallel: tuple[int | None, int | None] = (None, None),
                     unit_errors: dict[str, str] | None = None, batch: dict | None = None) -> schema.ResultsFile:
    """Score one model on every task, unit by unit; write its results and per-document files atomically.

    Finished units are cached, so a killed run resumes where it stopped; missing ones are computed here (the
    model loaded once), unless an executor already tried: unit_errors (task -> reason) are the units that failed
    there, batch the batch_info of those it computed. A fault (load error, non-finite weights or scores, out of
    memory) is written as a failed results file with its reason, and re-raised."""
    suite, t0 = tasks.suite, time.perf_counter()
    udir = unit_dir(info.sha256, suite, tasks.limit, tasks.key)
    rows, all_docs = [], {}
    try:
        for spec in tasks.specs:
            f = unit_file(udir, spec)
            if spec.name in (unit_errors or {}):
                raise ModelFault(unit_errors[spec.name])
            if not f.exists():
                t1 = time.perf_counter()
                batch = compute_unit(path, info.name, info.sha256, f, spec, tasks, device, dtype, batch_size, batch_tokens,
                                     backend, parallel) or batch
                log(f"[evaluate]     {info.name} {spec.name} ({time.perf_counter() - t1:.1f}s)")
            d = schema.TaskDocs.model_validate(store.read_json(f))
            task_rows_ = task_rows(spec, d, suite)
            bad = [r["metric"] for r in task_rows_ if r["metric"] != "off_target_rate"
                   and (r["value"] is None or not math.isfinite(r["value"]))]
            if bad:
                raise ModelFault(f"{info.name}: {spec.name} {bad[0]} is not finite (NaN or inf log-probabilities); "
                                 "the model's outputs are numerically broken")
            rows += task_rows_
            all_docs[spec.name] = d
    except ModelFault as e:
        reason = str(e)
        failed = schema.ResultsFile(suite=suite["id"], suite_sha256=suite["sha256"],
                                    tasks={s.name: s.version for s in tasks.specs}, model=info,
                                    provenance=_provenance(device, dtype, batch, backend, t0, tasks.limit, merge, suite, dirty, tasks.data),
                                    status="failed", error=reason.splitlines()[0], rows=[])
        store.write_json(results_path, failed.model_dump(mode="json"))
        raise ModelFault(reason) from None
    finally:
        release_model()
    result = schema.ResultsFile(
        suite=suite["id"], suite_sha256=suite["sha256"], tasks={s.name: s.version for s in tasks.specs}, model=info,
        provenance=_provenance(device, dtype, batch, backend, t0, tasks.limit, merge, suite, dirty, tasks.data),
        rows=[schema.ResultRow(**r) for r in rows])
    docs = schema.DocsFile(suite=suite["id"], suite_sha256=suite["sha256"], model_sha256=info.sha256, tasks=all_docs)
    store.write_json(docs_path(results_path), docs.model_dump(mode="json"))
    store.write_json(results_path, result.model_dump(mode="json"))
    return result
