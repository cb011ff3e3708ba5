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


def init_summary(rep_rows: list[dict], explain: dict) -> str:
    """One sentence for the site: whether the independent-initialisation comparison shows the seed's collapse here,
    and what the distances and barriers say about why."""
    row = next((r for r in rep_rows if r["finding"].startswith("... more so with independent")), None)
    if row is None:
        return ""
    parts = [f"Cross-init merges minus same-init merges of the same languages and methods: {row['estimate']:+.3f} bits per byte "
             f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], {row['verdict']}."]
    mono = next((m for m in explain.get("movement", []) if m["kind"] == "mono"), None)
    if mono and explain.get("init_distance"):
        ratio = mono["mean"] / explain["init_distance"]
        parts.append(f"The monolingual experts moved {mono['mean']:.2f} of their initialisation's norm on average, against "
                     f"{explain['init_distance']:.2f} between the two random initialisations"
                     + (": each stayed near where it started, so a shared initialisation keeps two experts near each other "
                        "and two initialisations keep them apart." if ratio < 0.5 else
                        f": training moved each {ratio:.1f} times as far as the initialisations are apart, so a shared "
                        "initialisation no longer keeps two experts near each other, and merges of same-init and cross-init "
                        "experts lose about alike." if ratio > 1.5 else
                        ": training moved each about as far as the initialisations are apart."))
    bars: dict[str, list] = {}
    for b in explain.get("barriers", []):
        bars.setdefault(b["relation"], []).append(f"{b['barrier']:.3f} ({b['set']})")
    if "cross-init, same language" in bars:
        parts.append(f"The loss barrier between same-language experts from different initialisations is "
                     f"{' and '.join(bars['cross-init, same language'])} bits per byte (a same-language, same-init pair "
                     f"would be one model); between experts of different languages the path is scored on "
                     f"both languages' dev text, where each endpoint is poor on the other's language, so that barrier reads near zero "
                     f"whatever the initialisation.")
    return " ".join(parts)


def build(df: pd.DataFrame, docs: dict[str, schema.DocsFile], merges: dict[str, list[str]], sim: pd.DataFrame,
          neurons: pd.DataFrame, movement: pd.DataFrame, suite: dict, tasks: dict | None = None,
          gaps: pd.DataFrame | None = None, scored: pd.DataFrame | None = None, memo=inference._call,
          diag: pd.DataFrame | None = None, set_diag: pd.DataFrame | None = None, task_gaps: pd.DataFrame | None = None,
          shares: pd.Series | None = None) -> dict:
    """All analysis tables. tasks: validity.assess's task table, gaps: analysis.merge_gaps(df, merges), scored:
    analysis.scored(df, tasks), diag: analysis.merge_diagnostics(sim), set_diag: inference.set_diagnostics(diag,
    merges), task_gaps: inference.merge_task_gaps(df, merges, tasks), shares: inference.own_share(df, merges,
    tasks); each computed here when not given (a caller that has them passes them). memo(fn, *args) calls each
    set-level correlation and power simulation (a site build passes sitecache.Memo, keeping those whose inputs
    are unchanged)."""
    if tasks is None:
        tasks = validity.assess(df, suite, docs)[0] if not df.empty else {}
    if gaps is None:
        gaps = analysis.merge_gaps(df, merges) if not df.empty else pd.DataFrame()
    tables = analysis.diagnostics_tables(gaps, sim, merges, neurons, suite, diag)
    inf = inference.tables(df, merges, tasks, tables["diagnostics"], suite["seed"], scored, tables["covariates"], memo, set_diag,
                           task_gaps, shares)
    rep = replication.table(docs, merges, inf, tables, suite)
    explain = init_explanation(movement, inf["set_diagnostics"])
    explain["summary"] = init_summary(rep, explain)
    return {"gaps": gaps, **tables, **inf, "replication": rep, "init_explanation": explain}
