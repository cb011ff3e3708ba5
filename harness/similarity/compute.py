"""The similarity stage's I/O: a fixed, versioned probe set, one forward pass per model over it (hidden
states, gate activations, span activations, dev likelihoods), cached by model hash and probe version, and
the pair computations (CKA, neuron overlap, weight space, loss barrier) cached the same way."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import identity, store
from ..corpus import Corpus
from ..tasks import spaced
from . import cka, neurons, weights
from .groups import GROUPS

PROBE_VERSION = "probe-v2"
# What the probe holds; any change here is a new probe (new sha, nothing reused).
PROBE_SPEC = {"cka_verses": 16, "rbf_tokens": 2048, "neuron_verses": 64, "mt_verses": 32, "dev_verses": 16,
              "seed": 0, "pivot": "en"}
# Version of what is computed from the probe (metrics, thresholds); part of every cache key.
DIAG_VERSION = {"v": "diag-v3", "path_on": "the pair's expert languages", "rbf_threshold": cka.RBF_THRESHOLD, "lape": [neurons.LAPE_TOP_RATE, neurons.LAPE_FILTER_RATE,
                neurons.LAPE_BAR_RATE], "ap_top_frac": neurons.AP_TOP_FRAC, "span_ap": neurons.SPAN_SELECTIVE_AP,
                "trim": weights.TRIM_DENSITY, "path_points": weights.PATH_POINTS}
CKA_METRICS = ("cka_linear", "cka_debiased", "cka_rbf")
# What each cached pair computation depends on beyond the models and the probe; bump one to recompute only it.
PAIR_VERSIONS = {"cka": ["cka-v2", cka.RBF_THRESHOLD], "ckam": ["cka-v2", cka.RBF_THRESHOLD],
                 "weights": ["weights-v1", weights.TRIM_DENSITY], "weightset": ["weights-v1", weights.TRIM_DENSITY],
                 "pathl": ["path-v2", weights.PATH_POINTS]}


@dataclass
class Probe:
    """The probe set: the same verses in every language (test books for activations, dev books for the loss path)."""

    languages: list[str]
    cka_texts: list[str]                 # cka_verses per language, language by language
    neuron_texts: list[str]              # neuron_verses per language
    neuron_labels: list[str]
    mt: list[tuple[str, str, str]]       # (target language, source verse, target verse)
    dev_texts: list[str]

    @property
    def sha(self) -> str:
        return store.sha256_obj({"v": PROBE_VERSION, "spec": PROBE_SPEC, "cka": self.cka_texts, "neuron": self.neuron_texts,
                                 "labels": self.neuron_labels, "mt": self.mt, "dev": self.dev_texts})

    @property
    def targets(self) -> list[str]:
        return [l for l in self.languages if l != PROBE_SPEC["pivot"]]


def build_probe(corpus: Corpus, languages: list[str]) -> Probe:
    s = PROBE_SPEC
    test = {l: corpus.texts(l, "test") for l in languages}
    dev = {l: corpus.texts(l, "dev") for l in languages}
    pick = lambda texts, k: [texts[i] for i in spaced(len(texts), k)]
    cka_texts = [t for l in languages for t in pick(test[l], s["cka_verses"])]
    # neuron verses: evenly spaced, offset by half a step so they are not the CKA verses
    n = len(test[languages[0]])
    nidx = [min(n - 1, i + n // (2 * s["neuron_verses"])) for i in spaced(n, s["neuron_verses"])]
    neuron_texts = [test[l][i] for l in languages for i in nidx]
    labels = [l for l in languages for _ in nidx]
    pivot = s["pivot"]
    midx = spaced(n, s["mt_verses"])
    mt = [(x, test[pivot][i], test[x][i]) for x in languages if x != pivot for i in midx]
    dev_texts = [t for l in languages for t in pick(dev[l], s["dev_verses"])]
    return Probe(languages, cka_texts, neuron_texts, labels, mt, dev_texts)


# ---- one model over the probe ------------------------------------------------------------------------------

def _load(path: Path, device: str):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False,
                                                 dtype=torch.float32).to(device).eval()
    return tok, model


def _gates(model) -> list:
    """Each block's gated MLP (LLaMA, Mistral, Qwen2, Gemma2, ...: act_fn(gate_proj(x)) * up_proj(x)), found by
    structure, not by model class."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not all(hasattr(l, "mlp") and hasattr(l.mlp, "act_fn") and isinstance(
            getattr(l.mlp, "gate_proj", None), torch.nn.Module) for l in layers):
        raise ValueError(f"{type(model).__name__}: no gated MLP (model.layers[i].mlp.gate_proj and act_fn): no gate "
                         "activations to read")
    return [l.mlp for l in layers]


def gate_hooks(model, captured: list) -> list:
    """Forward hooks that append each block's gate activation act_fn(x W_gate), (batch, T, N), to `captured` in
    block order: a hook on the gate projection (an nn.Linear in every gated-MLP family) applies the block's own
    activation to its output, so it works whether act_fn is a module or a plain function."""
    return [mlp.gate_proj.register_forward_hook(lambda _m, _i, out, act=mlp.act_fn: captured.append(act(out)))
            for mlp in _gates(model)]


def start_token(tok) -> int:
    """The token every probe sequence starts with: BOS, or EOS for tokenizers without one (Qwen2)."""
    tid = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if tid is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start probe sequences with")
    return tid


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask, (len(seqs), longest)."""
    width = max(len(q) for q in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, q in enumerate(seqs):
        ids[r, :len(q)], mask[r, :len(q)] = torch.tensor(q), 1
    return ids, mask


@torch.no_grad()
def _forward(model, seqs: list[list[int]], device: str, batch: int = 16):
    """Yields (i, hidden states per layer (T_i, width), gate activations per block (T_i, N), logits (T_i, V))
    for each sequence, run in right-padded batches (causal attention: padding after a token never changes it)."""
    captured: list[torch.Tensor] = []
    hooks = gate_hooks(model, captured)
    try:
        for s in range(0, len(seqs), batch):
            chunk = seqs[s:s + batch]
            ids, mask = _pad(chunk)
            captured.clear()
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            hs = [h.float().cpu() for h in out.hidden_states]
            gs = [g.float().cpu() for g in captured]
            logits = out.logits.float().cpu()
            for r, q in enumerate(chunk):
                t = len(q)
                yield s + r, [h[r, :t] for h in hs], [g[r, :t] for g in gs], logits[r, :t]
    finally:
        for h in hooks:
            h.remove()


def probe_model(path: Path, probe: Probe, device: str = "cpu") -> dict[str, np.ndarray]:
    """Everything the diagnostics read from one model, as float32/float64 arrays:
    hidden (layers, tokens, width): CKA probe hidden states, BOS dropped; over_zero (langs, L, N) counts of
    gate activation > 0 and tokens (langs,) on the neuron probe; text_gate (texts, L, N) and text_emb
    (texts, width) per-verse means; span_src / span_tgt (prompts, L, N) span means; dev_ll, dev_bytes."""
    tok, model = _load(path, device)
    bos = start_token(tok)
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]
    out: dict[str, np.ndarray] = {}

    layers: list[list[torch.Tensor]] | None = None
    for _, hs, _, _ in _forward(model, [[bos] + enc(t) for t in probe.cka_texts], device):
        layers = layers or [[] for _ in hs]
        for i, h in enumerate(hs):
            layers[i].append(h[1:])
    out["hidden"] = torch.stack([torch.cat(c) for c in layers]).numpy()

    langs = probe.languages
    L, N = len(_gates(model)), model.config.intermediate_size
    over_zero = np.zeros((len(langs), L, N))
    tokens = np.zeros(len(langs))
    text_gate = np.zeros((len(probe.neuron_texts), L, N), dtype=np.float32)
    text_emb = np.zeros((len(probe.neuron_texts), model.config.hidden_size), dtype=np.float32)
    for i, hs, gs, _ in _forward(model, [[bos] + enc(t) for t in probe.neuron_texts], device):
        li = langs.index(probe.neuron_labels[i])
        g = torch.stack(gs)[:, 1:]  # (L, T, N) without BOS
        over_zero[li] += (g > 0).sum(1).numpy()
        tokens[li] += g.shape[1]
        text_gate[i] = g.mean(1).numpy()
        text_emb[i] = hs[0][1:].mean(0).numpy()
    out.update(over_zero=over_zero, tokens=tokens, text_gate=text_gate, text_emb=text_emb)

    from ..family.train import mt_prompt

    seqs, spans = [], []
    pivot = PROBE_SPEC["pivot"]
    for x, src, tgt in probe.mt:
        prompt = mt_prompt(pivot, x, src)
        p = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
        start = prompt.index(src)
        src_mask = neurons.span_mask(p["offset_mapping"], start, start + len(src))
        t_ids = enc(" " + tgt)
        seqs.append([bos] + p["input_ids"] + t_ids)
        spans.append((np.concatenate([[False], src_mask, np.zeros(len(t_ids), bool)]),
                      np.concatenate([[False], np.zeros(len(p["input_ids"]), bool), np.ones(len(t_ids), bool)])))
    span_src = np.zeros((len(seqs), L, N), dtype=np.float32)
    span_tgt = np.zeros((len(seqs), L, N), dtype=np.float32)
    for i, _, gs, _ in _forward(model, seqs, device):
        g = torch.stack(gs)  # (L, T, N)
        sm, tm = spans[i]
        span_src[i] = g[:, torch.from_numpy(sm)].mean(1).numpy()
        span_tgt[i] = g[:, torch.from_numpy(tm)].mean(1).numpy()
    out.update(span_src=span_src, span_tgt=span_tgt)
    out["dev_ll"], out["dev_bytes"] = dev_likelihood(model, tok, probe.dev_texts, device)
    return out


@torch.no_grad()
def dev_likelihood(model, tok, texts: list[str], device: str) -> tuple[np.ndarray, np.ndarray]:
    """Natural log-likelihood of each text after BOS, and its UTF-8 bytes: bits per byte on dev text."""
    seqs = [[start_token(tok)] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    ll = np.zeros(len(seqs))
    for s in range(0, len(seqs), 16):
        chunk = seqs[s:s + 16]
        ids, mask = _pad(chunk)
        logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.double(), -1).cpu()
        for r, q in enumerate(chunk):
            tgt = torch.tensor(q[1:])
            ll[s + r] = float(logp[r, :len(q) - 1].gather(1, tgt[:, None]).sum())
    return ll, np.array([len(t.encode("utf-8")) for t in texts], dtype=np.float64)


# ---- per-model neuron summary ------------------------------------------------------------------------------

def neuron_summary(a: dict[str, np.ndarray], probe: Probe) -> tuple[list[dict], dict]:
    """Tidy rows (metric, layer, language, value, units) and the language-neuron sets of one model.

    Layers: 0 = embedding output dimensions (AP only), 1..L = gate neurons of block l.
    lape_count: LAPE neurons per layer and language; ap_count: units among the language's top AP_TOP_FRAC
    of the model's units; ap_mean: mean AP of the layer's units; span_ap_{source,target}: mean span-conditioned
    AP of the block's neurons for target x; span_count_*: neurons whose span AP reaches SPAN_SELECTIVE_AP."""
    langs = probe.languages
    L, N = a["over_zero"].shape[1:]
    probs = a["over_zero"] / np.maximum(a["tokens"], 1)[:, None, None]
    lape = neurons.lape_neurons(probs)
    scores = np.concatenate([a["text_emb"], a["text_gate"].reshape(len(a["text_gate"]), -1)], 1)
    ap = neurons.ap_selectivity(scores, probe.neuron_labels, langs)  # (langs, width + L*N)
    top = neurons.top_selective(ap)
    width = a["text_emb"].shape[1]
    layer_of = np.concatenate([np.zeros(width, int), np.repeat(np.arange(1, L + 1), N)])
    rows = []
    for li, lang in enumerate(langs):
        for layer in range(L + 1):
            sel = layer_of == layer
            units = int(sel.sum())
            if layer >= 1:
                rows.append({"metric": "lape_count", "layer": layer, "language": lang, "value": float(lape[li, layer - 1].sum()), "units": units})
            rows.append({"metric": "ap_count", "layer": layer, "language": lang, "value": float(top[li, sel].sum()), "units": units})
            rows.append({"metric": "ap_mean", "layer": layer, "language": lang, "value": float(ap[li, sel].mean()), "units": units})
    targets = [x for x, _, _ in probe.mt]
    for span, key in (("source", "span_src"), ("target", "span_tgt")):
        sap = neurons.ap_selectivity(a[key].reshape(len(targets), -1), targets, probe.targets).reshape(len(probe.targets), L, N)
        for xi, x in enumerate(probe.targets):
            for layer in range(1, L + 1):
                v = sap[xi, layer - 1]
                rows.append({"metric": f"span_ap_{span}", "layer": layer, "language": x, "value": float(v.mean()), "units": N})
                rows.append({"metric": f"span_count_{span}", "layer": layer, "language": x,
                             "value": float((v >= neurons.SPAN_SELECTIVE_AP).sum()), "units": N})

    def as_sets(mask_by_lang, layer_index):
        return {lang: sorted([int(layer_index[j][0]), int(layer_index[j][1])] for j in np.flatnonzero(m))
                for lang, m in zip(langs, mask_by_lang)}

    gate_index = [(l + 1, n) for l in range(L) for n in range(N)]
    unit_index = [(0, d) for d in range(width)] + gate_index
    sets = {"lape": as_sets(lape.reshape(len(langs), -1), gate_index), "ap": as_sets(top, unit_index)}
    return rows, sets


def sets_mask(sets: dict[str, list[list[int]]], languages: list[str]) -> set[tuple[str, int, int]]:
    """A language-neuron set as (language, layer, index) triples, for Jaccard between models."""
    return {(lang, l, i) for lang in languages for l, i in sets.get(lang, [])}


# ---- caches ------------------------------------------------------------------------------------------------

class SimilarityCache:
    """Per-model probe arrays and per-pair results under $BABELMERGE_HOME/similarity/<probe>-<sha>/, keyed by
    the models' weight hashes (identity.model_hash: a cache of computed values is keyed by the bytes they were
    computed from); the in-memory copies hold the models of the current run."""

    def __init__(self, probe: Probe, device: str = "cpu"):
        self.probe, self.device = probe, device
        self.sha = probe.sha
        self.root = store.home() / "similarity" / f"{PROBE_VERSION}-{self.sha[:12]}"
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._grams: dict[str, list] = {}
        self.computed = 0  # model forward passes and pair computations actually run (not read from cache)
        self._shas: dict[Path, str] = {}

    def sha_of(self, path: Path) -> str:
        """The checkpoint's weight hash, computed once per run."""
        if path not in self._shas:
            self._shas[path] = identity.model_hash(path)
        return self._shas[path]

    def model_file(self, sha: str) -> Path:
        """Where one model's probe arrays are cached (probe_unit writes it)."""
        return self.root / "models" / f"{sha[:24]}.npz"

    def arrays(self, sha: str, path: Path) -> dict[str, np.ndarray]:
        if sha in self._arrays:
            return self._arrays[sha]
        f = self.model_file(sha)
        if f.exists():
            with np.load(f, allow_pickle=False) as z:
                arrs = {k: z[k] for k in z.files}
        else:
            arrs = probe_model(path, self.probe, self.device)
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp.npz")
            np.savez(tmp, **arrs)
            tmp.replace(f)
            self.computed += 1
        if len(self._arrays) > 48:
            self._arrays.pop(next(iter(self._arrays)))
        self._arrays[sha] = arrs
        return arrs

    def _rbf(self, sha: str, path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: the centered RBF Gram matrix on the probe's fixed token subsample and its HSIC with itself
        (kept for the few most recent models: a merge's pairs reuse them)."""
        if sha not in self._grams:
            hidden = self.arrays(sha, path)["hidden"]
            rng = np.random.default_rng(PROBE_SPEC["seed"])
            idx = np.sort(rng.choice(hidden.shape[1], min(PROBE_SPEC["rbf_tokens"], hidden.shape[1]), replace=False))
            grams = []
            for h in hidden:
                k = cka.center_gram(cka.gram_rbf(torch.from_numpy(h[idx])))
                grams.append((k, (k * k).sum()))
            if len(self._grams) >= 10:
                self._grams.pop(next(iter(self._grams)))
            self._grams[sha] = grams
        return self._grams[sha]

    def _pair(self, kind: str, key: list[str], compute) -> dict:
        """A pair result cached under the pair's hashes and the version of that one computation (PAIR_VERSIONS),
        so changing one diagnostic leaves the others' caches valid."""
        f = self.root / "pairs" / f"{kind}-{store.sha256_obj({'key': key, 'v': PAIR_VERSIONS[kind]})[:24]}.json"
        if f.exists():
            return store.read_json(f)
        value = compute()
        store.write_json(f, value)
        self.computed += 1
        return value

    def cka(self, a: tuple[str, Path], b: tuple[str, Path], matrix: bool = False) -> dict:
        """Per-layer CKA of every variant (and the layer x layer linear matrix when asked). a, b: (sha, path)."""
        (sa, pa), (sb, pb) = sorted([a, b])

        def compute():
            xa, xb = self.arrays(sa, pa)["hidden"], self.arrays(sb, pb)["hidden"]
            if xa.shape[:2] != xb.shape[:2]:
                raise ValueError("models tokenise the probe differently (different token counts): CKA needs the same tokens")
            xs, ys = [torch.from_numpy(x) for x in xa], [torch.from_numpy(y) for y in xb]
            ka, kb = self._rbf(sa, pa), self._rbf(sb, pb)
            out = {"cka_linear": cka.layerwise(xs, ys, "cka_linear"), "cka_debiased": cka.layerwise(xs, ys, "cka_debiased"),
                   "cka_rbf": [float((k * l).sum() / torch.sqrt(nk * nl)) for (k, nk), (l, nl) in zip(ka, kb)]}
            if matrix:
                out["cka_linear_matrix"] = cka.linear_cka_matrix(xs, ys).tolist()
            return out

        return self._pair("cka" + ("m" if matrix else ""), [sa, sb], compute)

    def weight_pair(self, a: tuple[str, Path, str, Path], b: tuple[str, Path, str, Path], n_blocks: int) -> dict:
        """Task-vector cosine and sign conflict (raw, trimmed) of two models against their bases.
        a, b: (model sha, model path, base sha, base path)."""
        a, b = sorted([a, b])

        def compute():
            ta, tb = _task_vector(a), _task_vector(b)
            return {"cosine": weights.cosine(ta, tb, n_blocks), "conflict_raw": weights.sign_conflict([ta, tb], n_blocks),
                    "conflict_trim": weights.sign_conflict([weights.trim(ta), weights.trim(tb)], n_blocks)}

        return self._pair("weights", [a[0], a[2], b[0], b[2]], compute)

    def weight_set(self, items: list[tuple[str, Path, str, Path]], n_blocks: int) -> dict:
        items = sorted(items)

        def compute():
            tvs = [_task_vector(i) for i in items]
            return {"conflict_raw": weights.sign_conflict(tvs, n_blocks),
                    "conflict_trim": weights.sign_conflict([weights.trim(t) for t in tvs], n_blocks)}

        return self._pair("weightset", [x for i in items for x in (i[0], i[2])], compute)

    def path(self, a: tuple[str, Path], b: tuple[str, Path], languages: list[str] | None = None) -> dict:
        """Dev bits per byte at PATH_POINTS evenly spaced points of the linear path from a to b (a, b sorted by
        hash), on the dev verses of `languages` (all probe languages when None), and its loss barrier."""
        (sa, pa), (sb, pb) = sorted([a, b])

        def compute():
            tok, model = _load(pa, self.device)
            wa, wb = _weights(pa), _weights(pb)
            per_lang = {l: [] for l in self.probe.languages}
            k = PROBE_SPEC["dev_verses"]
            for alpha in weights.alphas():
                model.load_state_dict(weights.interpolate(wa, wb, alpha), strict=True)
                ll, nb = dev_likelihood(model, tok, self.probe.dev_texts, self.device)
                for i, l in enumerate(self.probe.languages):
                    per_lang[l].append([float(ll[i * k:(i + 1) * k].sum()), float(nb[i * k:(i + 1) * k].sum())])
            return {"alpha": weights.alphas(), "ll_bytes": per_lang}

        res = self._pair("pathl", [sa, sb], compute)
        langs = [l for l in (languages or self.probe.languages) if l in res["ll_bytes"]] or self.probe.languages
        ll = np.sum([[p[0] for p in res["ll_bytes"][l]] for l in langs], 0)
        nb = np.sum([[p[1] for p in res["ll_bytes"][l]] for l in langs], 0)
        bpb = (-ll / np.log(2) / nb).tolist()
        return {"alpha": res["alpha"], "bpb": bpb, "barrier": weights.loss_barrier(bpb, res["alpha"]), "languages": langs}


def probe_unit(path: Path, sha: str, probe: Probe, device: str) -> None:
    """One probe pass as a unit of harness/executors.py: the model's probe arrays (probe_model) written to the
    cache under the current store; nothing when they are there. A model the probe cannot read (no gated MLP, a
    tokenisation without the probe's start token) is the unit's own fault (sources.ModelFault), never retried."""
    from ..evaluate import pick_device
    from ..sources import ModelFault

    cache = SimilarityCache(probe, pick_device(device))
    if cache.model_file(sha).exists():
        return
    try:
        cache.arrays(sha, Path(path))
    except ValueError as e:
        raise ModelFault(str(e)) from None


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _task_vector(item: tuple[str, Path, str, Path]) -> dict[str, torch.Tensor]:
    return weights.task_vector(_weights(item[1]), _weights(item[3]))


# ---- tidy rows for one merge ------------------------------------------------------------------------------

def _row(metric, x, y, relation, value, **extra) -> dict:
    return {"metric": metric, "a": x[0], "b": y[0], "a_sha256": x[1], "b_sha256": y[1], "relation": relation,
            "value": float(value), "probe": PROBE_VERSION, **extra}


def pair_languages(a: str, b: str) -> list[str] | None:
    """The languages two family members are experts in (their dev text scores the loss path); None for others."""
    from ..analysis import merge_languages

    return merge_languages([a, b]) or None


def merge_similarity_rows(cache: SimilarityCache, merge: tuple[str, str, Path],
                          constituents: list[tuple[str, str, Path]],
                          bases: dict[str, tuple[str, Path]] | None = None,
                          neuron_sets: dict[str, dict] | None = None, n_blocks: int | None = None) -> list[dict]:
    """Tidy rows for one merge. merge, constituents: (name, sha256, path); bases: constituent name -> (sha, path)
    of the model its task vector is taken against (None: no weight-space rows); neuron_sets: model name ->
    its language-neuron sets (neuron_summary), for Jaccard overlap.

    Constituent pairs: CKA (three variants per layer, linear layer x layer matrix), neuron-set Jaccard, task-vector
    cosine and sign conflict per layer group, the loss path and its barrier. Merge-constituent pairs: CKA per
    layer and Jaccard. The constituent set: sign conflict across all task vectors."""
    rows = []

    def add_cka(x, y, relation, matrix):
        res = cache.cka((x[1], x[2]), (y[1], y[2]), matrix=matrix)
        flip = sorted([x[1], y[1]])[0] != x[1]  # the cache orders the pair by hash
        for metric in CKA_METRICS:
            for layer, v in enumerate(res[metric]):
                rows.append(_row(metric, x, y, relation, v, layer=layer))
        if matrix:
            m = np.array(res["cka_linear_matrix"])
            m = m.T if flip else m
            for i, j in itertools.product(range(m.shape[0]), range(m.shape[1])):
                rows.append(_row("cka_linear_matrix", x, y, relation, m[i, j], layer=i, layer_b=j))

    def add_jaccard(x, y, relation):
        if neuron_sets and x[0] in neuron_sets and y[0] in neuron_sets:
            langs = cache.probe.languages
            for kind in ("lape", "ap"):
                j = neurons.jaccard(sets_mask(neuron_sets[x[0]][kind], langs), sets_mask(neuron_sets[y[0]][kind], langs))
                if j == j:
                    rows.append(_row(f"neuron_jaccard_{kind}", x, y, relation, j))

    for x, y in itertools.combinations(constituents, 2):
        add_cka(x, y, "constituents", matrix=True)
        add_jaccard(x, y, "constituents")
        if bases and n_blocks:
            w = cache.weight_pair((x[1], x[2], *bases[x[0]]), (y[1], y[2], *bases[y[0]]), n_blocks)
            for g in ("all", *GROUPS):
                for metric, key in (("task_cosine", "cosine"), ("sign_conflict", "conflict_raw"), ("sign_conflict_trim", "conflict_trim")):
                    if g in w[key] and w[key][g] == w[key][g]:
                        rows.append(_row(metric, x, y, "constituents", w[key][g], group=g))
        p = cache.path((x[1], x[2]), (y[1], y[2]), languages=pair_languages(x[0], y[0]))
        flip = sorted([x[1], y[1]])[0] != x[1]
        for alpha, v in zip(p["alpha"], p["bpb"]):
            rows.append(_row("path_bpb", x, y, "constituents", v, alpha=round(1 - alpha, 10) if flip else alpha))
        rows.append(_row("loss_barrier", x, y, "constituents", p["barrier"]))
    for c in constituents:
        add_cka(merge, c, "merge-constituent", matrix=False)
        add_jaccard(merge, c, "merge-constituent")
    if bases and n_blocks and len(constituents) > 2:
        w = cache.weight_set([(c[1], c[2], *bases[c[0]]) for c in constituents], n_blocks)
        for g in ("all", *GROUPS):
            for metric, key in (("sign_conflict_set", "conflict_raw"), ("sign_conflict_set_trim", "conflict_trim")):
                if g in w[key] and w[key][g] == w[key][g]:
                    rows.append(_row(metric, merge, merge, "constituent-set", w[key][g], group=g))
    return rows
