"""The pair diagnostics of one merge over arbitrary checkpoints at hub scale (`babelmerge diagnostics`): streamed
minibatch CKA per layer between the constituents and against the merge (Nguyen et al. 2021), LAPE neuron-set
overlap (Tang et al. 2024), task-vector cosine and sign conflict per layer group (Ilharco et al. 2023; Yadav et al.
2023) read tensor by tensor, and the loss barrier along the linear path between constituents (Frankle et al. 2020)
in bits per byte on the FLORES+ dev probe; written as one similarity file (schema.SimilarityFile).

Memory: at most two models are loaded at a time; activations stream in token minibatches (stream.py); weights are
compared one tensor at a time through safetensors' safe_open: with k constituents about 2k + 4 float64 copies of the
largest tensor (task vectors, their trimmed copies, trim's sort), computed: ~8 GB for Llama-2-7B's 32,000 x 4,096
embeddings, ~35 GB for Qwen2.5-7B's 152,064 x 3,584 ones (row chunks would lower it; not done)."""

from __future__ import annotations

import itertools
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from . import neurons, weights
from .groups import GROUPS
from .stream import flores_probe, lape_mask, load_causal_lm, probe_sequences, shared_tokenizer, stream_cka, token_batches

PROBE = "flores-plus-dev"   # the probe: the first n FLORES+ dev sentences (by id) of each language
DIAG = {"v": "hub-diag-v1", "cka": "linear minibatch CKA, unbiased HSIC per minibatch (cka.MinibatchCKA)",
        "lape": [neurons.LAPE_TOP_RATE, neurons.LAPE_FILTER_RATE, neurons.LAPE_BAR_RATE], "trim": weights.TRIM_DENSITY,
        "path_on": "the probe's FLORES+ dev sentences, every language pooled"}
PATH_POINTS = 5             # alphas 0, 0.25, ..., 1: each point is one forward pass of the probe at hub scale


def check_models(paths: list[Path]) -> dict[str, list[int]]:
    """Every checkpoint inspected before anything loads it (safety.inspect_local_model: safetensors only, no
    pickle, no code) and holding the same tensors with the same shapes; returns that name -> shape table."""
    from ..safety import UnsafeCheckpoint, inspect_local_model

    tables = []
    for p in paths:
        try:
            tables.append(inspect_local_model(p))
        except UnsafeCheckpoint as e:
            raise ValueError(str(e)) from None
    for p, t in zip(paths[1:], tables[1:]):
        if t != tables[0]:
            diff = sorted(set(t) ^ set(tables[0])) or sorted(k for k in t if t[k] != tables[0][k])
            raise ValueError(f"{p}: {diff[0]}: tensors differ from {paths[0]}'s (names or shapes); every model of a "
                             "merge must share one architecture")
    return tables[0]


def _files(path: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it."""
    from ..safety import safetensors_header

    return {name: f for f in sorted(Path(path).glob("*.safetensors")) for name in safetensors_header(f)}


class _Tensors:
    """One tensor at a time from a checkpoint's safetensors files (mmapped; only the tensor asked for is read)."""

    def __init__(self, path: Path, stack: ExitStack):
        from safetensors import safe_open

        self.files = _files(path)
        self.handles = {f: stack.enter_context(safe_open(str(f), framework="pt")) for f in set(self.files.values())}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.handles[self.files[name]].get_tensor(name)


def weight_space(constituents: list[Path], base: Path, n_blocks: int) -> dict[tuple[int, int] | str, dict]:
    """Task vectors against `base`, tensor by tensor: per constituent pair (i, j) the cosine and the sign conflict
    (raw, and after keeping each tensor's top TRIM_DENSITY by magnitude) per layer group and 'all'; for three or
    more constituents also 'set', the set's sign conflict. Only one tensor of each model is in memory at a time."""
    k = len(constituents)
    pairs = list(itertools.combinations(range(k), 2))

    def pieces(stack):
        src = [_Tensors(p, stack) for p in constituents]
        ref = _Tensors(base, stack)
        for name in ref.files:
            tvs = [weights.task_vector({name: s[name]}, {name: ref[name]}) for s in src]
            trimmed = [weights.trim(t) for t in tvs]
            out = {}
            for i, j in pairs:
                out |= {((i, j), key): v for key, v in weights.pair_sums(tvs[i][name], tvs[j][name]).items()}
                out |= {((i, j), "raw", key): v for key, v in weights.conflict_sums([tvs[i][name], tvs[j][name]]).items()}
                out |= {((i, j), "trim", key): v for key, v in weights.conflict_sums([trimmed[i][name], trimmed[j][name]]).items()}
            if k > 2:
                out |= {("set", "raw", key): v for key, v in weights.conflict_sums([t[name] for t in tvs]).items()}
                out |= {("set", "trim", key): v for key, v in weights.conflict_sums([t[name] for t in trimmed]).items()}
            yield name, out

    with ExitStack() as stack:
        sums = weights.group_sums(pieces(stack), n_blocks)
    part = lambda s, *prefix: {key[-1]: v for key, v in s.items() if key[:-1] == prefix}
    res: dict = {}
    for pair in pairs:
        res[pair] = {"cosine": {g: weights.cosine_of(part(s, pair)) for g, s in sums.items()},
                     "conflict_raw": {g: weights.conflict_of(part(s, pair, "raw")) for g, s in sums.items()},
                     "conflict_trim": {g: weights.conflict_of(part(s, pair, "trim")) for g, s in sums.items()}}
    if k > 2:
        res["set"] = {"conflict_raw": {g: weights.conflict_of(part(s, "set", "raw")) for g, s in sums.items()},
                      "conflict_trim": {g: weights.conflict_of(part(s, "set", "trim")) for g, s in sums.items()}}
    return res


def probe_bits(model, tok, texts: list[str], seqs: list[list[int]], device: str, tokens: int) -> float:
    """Bits per byte of the probe texts (each after its start token), scored in token minibatches."""
    from .compute import dev_likelihood

    ll = nb = 0.0
    for group in token_batches([len(q) - 1 for q in seqs], tokens):
        got, n_bytes = dev_likelihood(model, tok, [texts[i] for i in group], device)
        ll, nb = ll + float(got.sum()), nb + float(n_bytes.sum())
    return -ll / np.log(2) / nb


@torch.no_grad()
def linear_path(path_a: Path, path_b: Path, tok, texts: list[str], seqs: list[list[int]], device: str, dtype: str,
                tokens: int, points: int = PATH_POINTS) -> dict:
    """Probe bits per byte at `points` evenly spaced points of (1 - alpha) a + alpha b, and the loss barrier. One
    model is loaded; each point's weights are written into it tensor by tensor (weights.interpolate per tensor)."""
    model = load_causal_lm(path_a, device, dtype)
    params = dict(model.named_parameters())  # tied weights appear once, under the name the file stores
    bpb = []
    with ExitStack() as stack:
        ta, tb = _Tensors(path_a, stack), _Tensors(path_b, stack)
        unset = sorted(set(params) - set(ta.files))
        extra = sorted(set(ta.files) - set(params))
        if unset or extra:
            raise ValueError(f"{path_a}: {(unset or extra)[0]}: the weight files and the loaded model's parameters differ; "
                             "the checkpoint must hold exactly its model's parameters")
        for alpha in weights.alphas(points):
            for name in ta.files:
                params[name].copy_(weights.interpolate({name: ta[name]}, {name: tb[name]}, alpha)[name])
            bpb.append(probe_bits(model, tok, texts, seqs, device, tokens))
    alpha = weights.alphas(points)
    return {"alpha": alpha, "bpb": bpb, "barrier": weights.loss_barrier(bpb, alpha)}


def _names(paths: list[Path]) -> list[str]:
    """Row names: the folder names, or the paths as given when two folders share a name."""
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def merge_diagnostics(merged: Path, constituents: list[Path], base: Path | None, data, languages: list[str], n: int,
                      device: str = "cpu", dtype: str = "bfloat16", tokens: int = 1024, points: int = PATH_POINTS,
                      log=lambda *_: None) -> dict:
    """Every pair diagnostic of one merge, as a schema.SimilarityFile dict: CKA per layer (metric cka_minibatch)
    and LAPE neuron-set Jaccard for the constituent pairs and merge-constituent pairs; with a base, task-vector
    cosine and sign conflicts per layer group; the linear path between each constituent pair and its barrier."""
    from .. import identity, provenance, schema, store

    t0 = time.perf_counter()
    if len(constituents) < 2:
        raise ValueError("--constituents: name at least two checkpoints, separated by commas")
    everyone = [merged, *constituents] + ([base] if base else [])
    seen = [p.resolve() for p in everyone]
    if len(set(seen)) < len(seen):
        twice = next(p for p, r in zip(everyone, seen) if seen.count(r) > 1)
        raise ValueError(f"{twice}: named twice among --merged, --constituents and --base; name each model once")
    shapes = check_models(everyone)
    tok = shared_tokenizer(everyone)
    texts_by_lang = [flores_probe(data, [lang], n) for lang in languages]
    texts = [t for ts in texts_by_lang for t in ts]
    seqs_by_lang = [probe_sequences(tok, ts) for ts in texts_by_lang]
    seqs = [q for qs in seqs_by_lang for q in qs]
    if sum(len(q) - 1 for q in seqs) < 4:
        raise ValueError(f"{PROBE}: the probe holds fewer than 4 tokens; raise --n or add languages")
    models = [merged, *constituents]
    names = _names(models + ([base] if base else []))
    sha = {p: identity.model_hash(p) for p in everyone}
    who = {p: (nm, sha[p]) for p, nm in zip(models + ([base] if base else []), names)}
    rows: list[dict] = []

    def row(metric, x, y, relation, value, **extra):
        rows.append({"metric": metric, "a": who[x][0], "b": who[y][0], "a_sha256": who[x][1], "b_sha256": who[y][1],
                     "relation": relation, "value": float(value), "probe": PROBE, **extra})

    # activations: at most two models loaded; each model's LAPE mask computed once, when first loaded
    loaded: dict[Path, torch.nn.Module] = {}
    masks: dict[Path, np.ndarray] = {}
    pairs = [(x, y, "constituents") for x, y in itertools.combinations(constituents, 2)] + \
            [(merged, c, "merge-constituent") for c in constituents]
    for x, y, relation in pairs:
        for p in [p for p in loaded if p not in (x, y)]:
            del loaded[p]
        for p in (x, y):
            if p not in loaded:
                log(f"[diagnostics] loading {p}")
                loaded[p] = load_causal_lm(p, device, dtype)
                if p not in masks:
                    masks[p] = lape_mask(loaded[p], seqs_by_lang, device, tokens)[0]
        acc = None
        for acc in stream_cka(loaded[x], loaded[y], seqs, device, tokens):
            pass
        for layer, v in enumerate(acc.result()):
            row("cka_minibatch", x, y, relation, v, layer=layer)
        j = neurons.jaccard(masks[x], masks[y])
        if j == j:
            row("neuron_jaccard_lape", x, y, relation, j)
        log(f"[diagnostics] {who[x][0]} ~ {who[y][0]}: CKA over {acc.batches} minibatches")
    loaded.clear()

    n_blocks = int(store.read_json(merged / "config.json")["num_hidden_layers"])
    if base is not None:
        log("[diagnostics] task vectors, tensor by tensor")
        w = weight_space(constituents, base, n_blocks)
        for (i, j) in itertools.combinations(range(len(constituents)), 2):
            for metric, key in (("task_cosine", "cosine"), ("sign_conflict", "conflict_raw"), ("sign_conflict_trim", "conflict_trim")):
                for g in ("all", *GROUPS):
                    v = w[(i, j)][key].get(g, float("nan"))
                    if v == v:
                        row(metric, constituents[i], constituents[j], "constituents", v, group=g)
        if "set" in w:
            for metric, key in (("sign_conflict_set", "conflict_raw"), ("sign_conflict_set_trim", "conflict_trim")):
                for g in ("all", *GROUPS):
                    v = w["set"][key].get(g, float("nan"))
                    if v == v:
                        row(metric, merged, merged, "constituent-set", v, group=g)
    for x, y in itertools.combinations(constituents, 2):
        log(f"[diagnostics] linear path {who[x][0]} -> {who[y][0]}, {points} points")
        p = linear_path(x, y, tok, texts, seqs, device, dtype, tokens, points)
        for alpha, v in zip(p["alpha"], p["bpb"]):
            row("path_bpb", x, y, "constituents", v, alpha=alpha)
        row("loss_barrier", x, y, "constituents", p["barrier"])

    probe = {"data": "flores_plus", "split": "dev", "languages": languages, "n_per_language": n,
             "sentences": len(texts), "tokens": sum(len(q) - 1 for q in seqs), "minibatch_tokens": tokens}
    out = schema.SimilarityFile(
        probe=PROBE, probe_sha256=store.sha256_obj({"probe": PROBE, "languages": languages, "n": n, "texts": texts}),
        diagnostics={**DIAG, "path_points": points, "minibatch_tokens": tokens, "probe": probe},
        identities={who[p][0]: sha[p] for p in who},
        provenance={"harness": provenance.harness_version(), "git": provenance.git_hash(), "packages": provenance.packages(),
                    "device": device, "dtype": dtype, "seed": None,
                    "random": "none: every diagnostic here is a deterministic function of the weights and the probe",
                    "data": data.provenance(), "created_utc": provenance.now_utc(),
                    "models": {who[p][0]: {"role": role, "path": str(p), "sha256": sha[p], "weights": identity.weight_hashes(p)}
                               for p, role in [(merged, "merged"), *[(c, "constituent") for c in constituents],
                                               *([(base, "base")] if base else [])]},
                    "parameters": int(sum(np.prod(s) for s in shapes.values())),
                    "wall_s": round(time.perf_counter() - t0, 3)},
        rows=rows)
    return out.model_dump(exclude_none=True)


def summary(res: dict) -> list[str]:
    """A few human lines: per pair the CKA per layer and the neuron overlap, the weight-space figures over 'all',
    the path and its barrier."""
    rows = res["rows"]
    pairs = list(dict.fromkeys((r["a"], r["b"]) for r in rows if r["metric"] == "cka_minibatch"))
    pr = res["diagnostics"]["probe"]
    out = [f"probe {res['probe']}: {len(pr['languages'])} language(s) x {pr['n_per_language']} sentences, {pr['tokens']} tokens"]
    get = lambda m, a, b, **kw: [r for r in rows if r["metric"] == m and r["a"] == a and r["b"] == b
                                 and all(r.get(k) == v for k, v in kw.items())]
    for a, b in pairs:
        cka = " ".join(f"{r['value']:.3f}" for r in sorted(get("cka_minibatch", a, b), key=lambda r: r["layer"]))
        jac = get("neuron_jaccard_lape", a, b)
        out.append(f"{a} ~ {b}: CKA per layer {cka}" + (f"; LAPE Jaccard {jac[0]['value']:.3f}" if jac else ""))
    for r in rows:
        if r["metric"] == "task_cosine" and r["group"] == "all":
            c = get("sign_conflict", r["a"], r["b"], group="all")[0]["value"]
            t = get("sign_conflict_trim", r["a"], r["b"], group="all")[0]["value"]
            out.append(f"{r['a']} ~ {r['b']}: task-vector cosine {r['value']:.4f}, sign conflict {c:.3f} (trimmed {t:.3f})")
        if r["metric"] == "loss_barrier":
            path = " ".join(f"{p['value']:.3f}" for p in get("path_bpb", r["a"], r["b"]))
            out.append(f"{r['a']} -> {r['b']}: path bits per byte {path}; loss barrier {r['value']:.4f}")
    return out
