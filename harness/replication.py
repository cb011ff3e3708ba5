"""The seeds' findings (DESIGN section 1; Aycock et al. 2026, Gain et al. 2026) checked on stored results, each as
an estimate with a 95% interval at its own independent unit (documents, constituent sets or models), and a verdict
that follows the interval: 'holds' when it excludes zero in the predicted direction, 'contradicted' when it
excludes zero the other way, 'not detected' when it includes zero."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import schema, scoring
from .inference import short
from .languages import GENUS

VERDICTS = ("holds", "not detected", "contradicted", "n/a")
# Translation targets related to English and divergent from it, as grid.RELATED and grid.DIVERGENT group them (defined
# here from the same genera: importing grid would load the family builder and torch into a statistics-only process).
RELATED = {l for l, g in GENUS.items() if g in ("Germanic", "Romance")} - {"en"}
DIVERGENT = set(GENUS) - RELATED - {"en"}


def verdict(lo, hi, predicted: int) -> str:
    """predicted: +1 when the finding predicts a positive estimate, -1 a negative one."""
    if lo is None or hi is None or lo != lo or hi != hi:
        return "n/a"
    if (lo > 0 and predicted > 0) or (hi < 0 and predicted < 0):
        return "holds"
    if lo > 0 or hi < 0:
        return "contradicted"
    return "not detected"


def _row(finding, measure, unit, n, est, lo, hi, predicted, note="", null: float = 0.0) -> dict:
    """One finding; the verdict compares the interval with `null` (zero unless the finding names a threshold)."""
    v = verdict(None if lo is None else lo - null, None if hi is None else hi - null, predicted)
    return {"verdict": v, "finding": finding, "estimate": est, "ci_low": lo, "ci_high": hi, "null": null,
            "n": n, "unit": unit, "measure": measure, "note": note}


def _ci(samples: np.ndarray) -> tuple[float, float]:
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    return (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))) if len(s) else (None, None)


def _bpb_boot(docs: dict[str, schema.DocsFile], model: str, task: str, idx: np.ndarray) -> np.ndarray | None:
    d = docs.get(model)
    if d is None or task not in d.tasks:
        return None
    t = d.tasks[task]
    return scoring.bits_per_byte_boot(np.asarray(t.ll), np.asarray(t.bytes, dtype=np.float64), idx)


def _bpb(docs, model, task) -> float | None:
    d = docs.get(model)
    if d is None or task not in d.tasks:
        return None
    t = d.tasks[task]
    return scoring.bits_per_byte(np.asarray(t.ll), np.asarray(t.bytes, dtype=np.float64))


def _indices(docs, task, seed) -> np.ndarray | None:
    for d in docs.values():
        if task in d.tasks:
            return scoring.bootstrap_indices(len(d.tasks[task].ids), seed)
    return None


def own_language(docs, languages: list[str], seed: int) -> dict | None:
    """Monolingual experts are best in their own language: per language l, the smallest margin (bits per byte) of
    any other mono-<k> over mono-<l> on lm:<l>, paired bootstrap over documents; the reported row is the language
    with the smallest margin, and the verdict holds only if every language's interval is above zero."""
    per = []
    for l in languages:
        task, own = f"lm:{l}", f"mono-{l}"
        idx = _indices(docs, task, seed)
        others = [f"mono-{k}" for k in languages if k != l and f"mono-{k}" in docs]
        if idx is None or own not in docs or not others:
            continue
        ob = _bpb_boot(docs, own, task, idx)
        margins = np.min([_bpb_boot(docs, o, task, idx) - ob for o in others], axis=0)
        obs = min(_bpb(docs, o, task) for o in others) - _bpb(docs, own, task)
        per.append((l, obs, *_ci(margins), len(idx[0])))
    if not per:
        return None
    l, obs, lo, hi, nd = min(per, key=lambda r: r[2])
    held = sum(r[2] > 0 for r in per)
    return _row("Monolingual models are strongest in their own language",
                "smallest margin in bits per byte of another mono-<k> over mono-<l> on lm:<l>, paired bootstrap over documents",
                "documents", f"{len(per)} languages x {nd}", obs, lo, hi, +1,
                f"{held} of {len(per)} languages have an interval above zero; the weakest is {l}")


def _set_boot(values: np.ndarray, seed: int, n_boot: int = 1000) -> np.ndarray:
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(1)


def mono_collapse(norm_by_merge: pd.Series, mgaps: pd.DataFrame, seed: int) -> dict | None:
    """Linear merges of same-init monolingual experts collapse: per constituent set, the share of its experts' gain
    over the untrained floor that the linear merge keeps (100 = the experts, 0 = init-s0); one point per set,
    bootstrap over sets. Predicted: below 50 (more than half of the gain lost)."""
    codes, sets = pd.factorize(mgaps["set"])  # each distinct set checked once, not each merge's row
    same_init = np.array([all(c.startswith("mono-") and not c.endswith("-s1") for c in s.split("+")) for s in sets]
                         + [False], dtype=bool)  # the last for a missing set (code -1)
    g = mgaps[(mgaps.arm == "lm").to_numpy() & (mgaps.method == "linear").to_numpy() & same_init[codes]]
    if g.empty:
        return None
    per_set = g.assign(norm=g["merge"].map(norm_by_merge)).dropna(subset=["norm"]).groupby("set")["norm"].mean()
    if len(per_set) < 3:
        return None
    lo, hi = _ci(_set_boot(per_set.to_numpy(), seed))
    return _row("Merges of monolingual models collapse (keep under half of their experts' gain)",
                "share (%) of the experts' gain over init-s0 kept by the linear merge of same-init monolingual experts "
                "(100 = the experts, 0 = untrained), against 50; one point per set",
                "constituent sets", len(per_set), float(per_set.mean()), lo, hi, -1,
                f"range over sets {per_set.min():.1f} to {per_set.max():.1f}; mean bits-per-byte gap to the experts "
                f"{g.groupby('set')['gap'].mean().mean():+.3f}", null=50.0)


MATCHED = {"cross": [("mono-en", "mono-ru-s1"), ("mono-en-s1", "mono-ru")], "same": [("mono-en", "mono-ru"), ("mono-en-s1", "mono-ru-s1")]}


def independent_init(docs, merges: dict[str, list[str]], methods: dict[str, str], seed: int) -> dict | None:
    """Independently initialised merges lose more: for each method, the mean bits-per-byte gap to the experts
    (lm:en and lm:ru) of the two cross-init merges (mono-en + mono-ru-s1, mono-en-s1 + mono-ru) minus that of the
    two same-init merges (mono-en + mono-ru from init-s0, mono-en-s1 + mono-ru-s1 from init-s1), averaged over the
    methods that have all four; paired bootstrap over documents (every model resampled on the same verses)."""
    by, shorts = {}, {}
    for m, cons in merges.items():
        t = tuple(cons)
        if t not in shorts:  # ten thousand merges have a few hundred distinct constituent lists
            shorts[t] = frozenset(short(c) for c in cons)
        by.setdefault((methods.get(m), shorts[t]), []).append(m)
    use = []
    for meth in sorted({k[0] for k in by if k[0]}):
        got = {k: [by.get((meth, frozenset(p)), [None])[0] for p in v] for k, v in MATCHED.items()}
        if all(x is not None and x in docs for v in got.values() for x in v):
            use.append((meth, got))
    if not use:
        return None
    tasks = ["lm:en", "lm:ru"]
    idx = {t: _indices(docs, t, seed) for t in tasks}

    def gap(merge, boot: bool):
        cons = [short(c) for c in merges[merge]]
        out = []
        for t in tasks:
            e = next(c for c in cons if c.startswith(f"mono-{t[3:]}"))
            out.append(_bpb_boot(docs, e, t, idx[t]) - _bpb_boot(docs, merge, t, idx[t]) if boot else _bpb(docs, e, t) - _bpb(docs, merge, t))
        return np.mean(out, axis=0)

    diffs, obs = [], []
    for _, got in use:
        for boot, acc in ((True, diffs), (False, obs)):
            acc.append(np.mean([gap(m, boot) for m in got["cross"]], axis=0) - np.mean([gap(m, boot) for m in got["same"]], axis=0))
    lo, hi = _ci(np.mean(diffs, axis=0))
    per = ", ".join(f"{meth} {o:+.3f}" for (meth, _), o in zip(use, obs))
    return _row("... more so with independent initialisations",
                "bits-per-byte gap to the experts of cross-init merges minus same-init merges of the same languages and method (mono en+ru), paired over documents",
                "documents", f"{len(use)} methods x 2 matched pairs x {sum(len(i[0]) for i in idx.values())}",
                float(np.mean(obs)), lo, hi, -1, f"per method: {per}")


def mixed_beats_merges(docs, merges: dict[str, list[str]], languages: list[str], seed: int) -> dict | None:
    """`mixed` (trained on every language) beats the best merge on mean bits per byte over the lm tasks: the merge
    with the lowest mean, minus mixed, paired bootstrap over documents (chosen on the same data, so conservative)."""
    tasks = [f"lm:{l}" for l in languages]
    cand = [m for m in merges if m in docs and all(t in docs[m].tasks for t in tasks)]
    if "mixed" not in docs or not cand:
        return None
    mean = lambda m: float(np.mean([_bpb(docs, m, t) for t in tasks]))
    best = min(cand, key=mean)
    idx = {t: _indices(docs, t, seed) for t in tasks}
    d = np.mean([_bpb_boot(docs, best, t, idx[t]) - _bpb_boot(docs, "mixed", t, idx[t]) for t in tasks], axis=0)
    lo, hi = _ci(d)
    return _row("mixed beats every merge", "mean bits per byte over the lm tasks: the best merge minus mixed, paired over documents",
                "documents", f"{len(tasks)} languages x {len(idx[tasks[0]][0])}", mean(best) - mean("mixed"), lo, hi, +1,
                f"best merge {best} ({mean(best):.3f}) against mixed ({mean('mixed'):.3f}), of {len(cand)} merges")


def divergent_targets(task_gaps: pd.DataFrame, seed: int, value: str = "gap") -> dict | None:
    """Translation merges lose more for divergent targets: within each mixed pair of translation experts (one
    target related to English, one divergent), the divergent target's value minus the related one's, averaged over
    the pair's merges; one point per set, bootstrap over sets. value: 'gap' (chrF++ points lost to the expert) or
    'share' (percent of the expert's gain over init-s0 kept: a divergent expert with a lower score has fewer points
    to lose, which the absolute gap does not see)."""
    g = task_gaps[task_gaps.arm == "mt"] if not task_gaps.empty else task_gaps
    if g.empty:
        return None
    rows, pairs = [], {}
    for s in sorted(g["set"].unique()):
        targets = [c.split("-")[-1] for c in s.split("+")]
        if len(targets) == 2 and set(targets) & RELATED and set(targets) & DIVERGENT:
            pairs[s] = ([t for t in targets if t in RELATED][0], [t for t in targets if t in DIVERGENT][0])
    g = g[g["set"].isin(list(pairs))]
    if not pairs or g.empty:
        return None
    # per set, its merges' values by language: one table for all sets (a set's rows are its merges')
    wide = g.pivot_table(index=["set", "merge"], columns="language", values=value)
    for s, part in wide.groupby(level="set", sort=True):
        r, d = pairs[s]
        if r in part and d in part and part[r].notna().any() and part[d].notna().any():
            rows.append((part[d] - part[r]).mean())
    if len(rows) < 3:
        return None
    v = np.array(rows)
    lo, hi = _ci(_set_boot(v, seed))
    what = ("chrF++ gap to the expert" if value == "gap" else "share (%) of the expert's chrF++ gain over init-s0 kept")
    return _row(f"Translation merges lose more for divergent targets ({'chrF++ points' if value == 'gap' else 'share of gain kept'})",
                f"{what} on the divergent target minus on the related target, within pairs of one of each; one point per set",
                "constituent sets", len(v), float(v.mean()), lo, hi, -1)


def neuron_edges(layers: pd.DataFrame, merges: dict, seed: int) -> dict | None:
    """Language-specific units concentrate in the embeddings and upper layers: per trained family member, the
    share of AP-selective units in its edge groups (the larger of embeddings and upper) minus the middle layers;
    bootstrap over members."""
    from .similarity.groups import hidden_group

    if layers.empty:
        return None
    fam = layers[(layers.metric == "ap_count") & ~layers.model.isin(list(merges)) & ~layers.model.str.startswith("init-")]
    if fam.empty:
        return None
    n = int(fam.layer.max()) + 1
    fam = fam.assign(group=[hidden_group(int(l), n) for l in fam.layer])
    by = fam.groupby(["model", "group"])["share"].mean().unstack()
    if not {"embeddings", "upper", "middle"} <= set(by.columns):
        return None
    v = (100 * (by[["embeddings", "upper"]].max(axis=1) - by["middle"])).to_numpy()
    lo, hi = _ci(_set_boot(v, seed))
    return _row("Language-specific units concentrate in the embeddings and upper layers",
                "percentage points of AP-selective units: max(embeddings, upper) minus middle layers, per trained member",
                "family members", len(v), float(v.mean()), lo, hi, +1,
                ", ".join(f"{k} {100 * by[k].mean():.1f}%" for k in ("embeddings", "lower", "middle", "upper") if k in by))


def selectivity_movement(mv: pd.DataFrame, seed: int) -> list[dict]:
    """Fine-tuning makes target-span selectivity less exclusive for supervised and related languages and more
    isolated for unsupervised ones (Gain et al. 2026): per relation, the change of target-span AP from mixed to each
    mt-en-<x>, one point per fine-tuned model (averaged over its languages of that relation), bootstrap over models."""
    out = []
    if mv.empty:
        return out
    d = mv[mv.metric == "span_ap_target"]
    for rel, predicted in (("supervised", -1), ("related", -1), ("unsupervised", +1)):
        v = d[d.relation == rel].groupby("model")["delta"].mean().to_numpy()
        if len(v) < 3:
            continue
        lo, hi = _ci(_set_boot(v, seed))
        out.append(_row(f"Fine-tuning {'lowers' if predicted < 0 else 'raises'} target-span selectivity for {rel} languages",
                        "change of mean target-span AP from mixed to mt-en-<x>, per fine-tuned model", "fine-tuned models",
                        len(v), float(v.mean()), lo, hi, predicted))
    return out


def similarity_predicts(headline: list[dict]) -> list[dict]:
    """Representational similarity predicts the merge gap, per arm: the pooled set-level Spearman of the
    constituents' linear CKA with the gap (inference.headline)."""
    rows = []
    for h in headline:
        r = _row(f"Representational similarity predicts the merge gap ({'language modelling' if h['arm'] == 'lm' else 'translation'})",
                 "Spearman of the constituents' mean linear CKA with the gap to the experts, per method over sets, averaged over methods; "
                 "cluster bootstrap over sets, permutation p-value over sets",
                 "constituent sets", h["n"], h["rho"], h["lo"], h["hi"], +1, f"{h['merges']} merges behind the {h['n']} sets; p = {h['p']:.3g}")
        if r["verdict"] == "holds" and not h["p"] < 0.05:
            r["verdict"] = "not detected"  # the interval and the permutation test disagree: no claim
        rows.append(r)
    return rows


def table(docs: dict, merges: dict[str, list[str]], inf: dict, diag_tables: dict, suite: dict) -> list[dict]:
    """Every row, verdict first; rows whose data is missing are left out."""
    seed = suite["seed"]
    langs = suite["languages"]
    methods = inf["merge_arm_gaps"].drop_duplicates("merge").set_index("merge")["method"].to_dict()
    rows = [own_language(docs, langs, seed), mono_collapse(inf["own_share"], inf["merge_arm_gaps"], seed),
            independent_init(docs, merges, methods, seed), mixed_beats_merges(docs, merges, langs, seed),
            divergent_targets(inf["merge_task_gaps"], seed), divergent_targets(inf["merge_task_gaps"], seed, "share"),
            neuron_edges(diag_tables.get("neuron_layers", pd.DataFrame()), merges, seed)]
    rows += selectivity_movement(diag_tables.get("neuron_movement", pd.DataFrame()), seed)
    rows += similarity_predicts(inf.get("headline", []))
    return [r for r in rows if r is not None]
