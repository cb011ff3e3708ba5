"""Every table that `babelmerge analyze` prints and the analysis page shows, computed once from stored rows: the
diagnostics tables (analysis.py), the set-level correlations and power (inference.py), the replication table
(replication.py) and why independently initialised merges behave as they do here (distance from initialisation,
loss barriers)."""

from __future__ import annotations

import pandas as pd

from . import analysis, inference, replication, schema, validity


def init_explanation(movement: pd.DataFrame, sdiag: pd.DataFrame) -> dict:
    """What the independent-initialisation comparison rests on: how far each kind of trained member moved from its
    initialisation (relative L2 distance, all parameters), the distance between the two random initialisations,
    and the loss barrier on the linear path between the constituents of same-init and cross-init sets."""
    out = {"movement": [], "init_distance": None, "barriers": []}
    if not movement.empty:
        m = movement[(movement.group == "all")]
        init = m[m.a == "init-s1"]
        out["init_distance"] = float(init.value.iloc[0]) if len(init) else None
        kind = lambda n: ("mono (init-s1)" if n.endswith("-s1") else n.split("-")[0] if n.split("-")[0] in ("mono", "cpt") else
                          "mt-en-x" if n.startswith("mt-en-") else n)
        t = m[m.a != "init-s1"].assign(kind=lambda d: d.a.map(kind)).groupby("kind")["value"].agg(["mean", "min", "max", "count"])
        out["movement"] = [{"kind": k, "mean": r["mean"], "min": r["min"], "max": r["max"], "n": int(r["count"])} for k, r in t.iterrows()]
    col = "loss_barrier:all"
    if not sdiag.empty and col in sdiag:
        for s, label in (("mono-en+mono-ru", "same init (init-s0)"), ("mono-en-s1+mono-ru-s1", "same init (init-s1)"),
                         ("mono-en+mono-ru-s1", "cross-init"), ("mono-en-s1+mono-ru", "cross-init"),
                         ("mono-en+mono-en-s1", "cross-init, same language"), ("mono-ru+mono-ru-s1", "cross-init, same language")):
            if s in sdiag.index and sdiag.loc[s, col] == sdiag.loc[s, col]:
                out["barriers"].append({"set": s, "relation": label, "barrier": float(sdiag.loc[s, col])})
    return out


def build(df: pd.DataFrame, docs: dict[str, schema.DocsFile], merges: dict[str, list[str]], sim: pd.DataFrame,
          neurons: pd.DataFrame, movement: pd.DataFrame, suite: dict, tasks: dict | None = None) -> dict:
    """All analysis tables. tasks: validity.assess's task table (computed here when not given)."""
    if tasks is None:
        tasks = validity.assess(df, suite, docs)[0] if not df.empty else {}
    gaps = analysis.merge_gaps(df, merges) if not df.empty else pd.DataFrame()
    tables = analysis.diagnostics_tables(gaps, sim, merges, neurons, suite)
    inf = inference.tables(df, merges, tasks, tables["diagnostics"], suite["seed"])
    rep = replication.table(docs, merges, inf, tables, suite)
    return {"gaps": gaps, **tables, **inf, "replication": rep,
            "init_explanation": init_explanation(movement, inf["set_diagnostics"])}
