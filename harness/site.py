"""The static leaderboard: jinja2 (autoescape, StrictUndefined) over the stored results and similarity
rows; aggregates are derived here, at build time, never stored."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from . import analysis, store
from .provenance import git_hash, now_utc

TEMPLATES = Path(__file__).resolve().parent.parent / "site" / "templates"
STATIC = Path(__file__).resolve().parent.parent / "site" / "static"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "site" / "_build"


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def scatter(points: list[dict], fit: dict, width=420, height=300, pad=44) -> dict:
    """Pixel coordinates for an SVG scatter of (cka, gap) with the fitted line; pure, for the template."""
    if not points:
        return {"points": [], "line": None, "width": width, "height": height, "xticks": [], "yticks": []}
    xs, ys = [p["cka"] for p in points], [p["gap"] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys + [0.0]), max(ys + [0.0])
    x0, x1 = (x0 - 0.05, x1 + 0.05) if x1 - x0 < 1e-9 else (x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0))
    y0, y1 = (y0 - 1, y1 + 1) if y1 - y0 < 1e-9 else (y0 - 0.08 * (y1 - y0), y1 + 0.08 * (y1 - y0))
    sx = lambda x: pad + (x - x0) / (x1 - x0) * (width - 1.5 * pad)
    sy = lambda y: height - pad - (y - y0) / (y1 - y0) * (height - 1.5 * pad)
    line = None
    if fit.get("slope") is not None:
        line = {"x1": sx(x0), "y1": sy(fit["intercept"] + fit["slope"] * x0),
                "x2": sx(x1), "y2": sy(fit["intercept"] + fit["slope"] * x1)}
    ticks = lambda a, b: [a + (b - a) * i / 4 for i in range(5)]
    return {"points": [{"x": sx(p["cka"]), "y": sy(p["gap"]), "label": p["merge"], "cka": p["cka"], "gap": p["gap"]}
                       for p in points],
            "line": line, "width": width, "height": height, "zero_y": sy(0.0), "pad": pad,
            "xticks": [{"v": v, "x": sx(v)} for v in ticks(x0, x1)], "yticks": [{"v": v, "y": sy(v)} for v in ticks(y0, y1)]}


def heat(v: float | None) -> str:
    """CSS class for a relative gap in percent: h-n3..h-n1 losses, h-0 about even, h-p1..h-p3 gains."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "h-na"
    for bound, level in ((40, 3), (15, 2), (5, 1)):
        if abs(v) >= bound:
            return f"h-{'n' if v < 0 else 'p'}{level}"
    return "h-0"


def build(results, similarity: pd.DataFrame, merges: dict[str, list[str]], suite: dict, out: Path = DEFAULT_OUT,
          paired: pd.DataFrame | None = None) -> Path:
    """Render index.html and the downloads into `out` from results and similarity rows alone."""
    df = analysis.tidy(results)
    board = analysis.leaderboard(df) if not df.empty else pd.DataFrame()
    gaps = analysis.merge_gaps(df, merges) if not df.empty else pd.DataFrame()
    corr = analysis.cka_vs_gap(gaps, similarity)
    lm_tasks = [f"lm:{l}" for l in suite["languages"]]
    mt_tasks = [f"mt:{suite['pivot']}-{x}" for x in suite["languages"] if x != suite["pivot"]]
    heat_rows = []
    if not gaps.empty:
        e = gaps[gaps.reference == "expert"].pivot_table(index="merge", columns="task", values="rel_gap_pct")
        m = gaps[gaps.reference == "mixed"].pivot_table(index="merge", columns="task", values="rel_gap_pct")
        sig = set()
        if paired is not None and not paired.empty:
            sig = {(r.merge, r.task) for r in paired.itertuples() if r.ci_low > 0 or r.ci_high < 0}
        for merge in sorted(merges):
            cells = []
            for t in lm_tasks + mt_tasks:
                ve = e.at[merge, t] if merge in e.index and t in e.columns else None
                vm = m.at[merge, t] if merge in m.index and t in m.columns else None
                cells.append({"expert": _fmt(ve, 1) + ("*" if (merge, t) in sig else ""), "mixed": _fmt(vm, 1), "cls": heat(ve if ve is not None and not pd.isna(ve) else vm)})
            heat_rows.append({"merge": merge, "cells": cells})

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined)
    env.filters["fmt"] = _fmt
    rows = []
    for model, r in board.iterrows():
        rows.append({"model": model, "kind": r["kind"], "arm": r["arm"] or "", "method": r["method"] or "",
                     "score": r["babel_score"], "bpb": r["mean_bpb"], "chrf": r["mean_chrf"],
                     "lm": [r.get(t) for t in lm_tasks], "mt": [r.get(t) for t in mt_tasks]})
    failed = [{"model": r.model.name, "kind": r.model.kind, "error": r.error or "unknown"} for r in results
              if r.status == "failed"]
    html = env.get_template("index.html.j2").render(
        suite=suite, rows=rows, failed=failed, lm_tasks=lm_tasks, mt_tasks=mt_tasks, corr=corr,
        plot=scatter(corr["points"], corr), heat_rows=heat_rows, built=now_utc(), git=git_hash(),
        n_models=len(rows), n_merges=len(merges))
    out.mkdir(parents=True, exist_ok=True)
    store.atomic_write_text(out / "index.html", html)
    store.atomic_write_text(out / "style.css", (STATIC / "style.css").read_text(encoding="utf-8"))
    (out / "data").mkdir(exist_ok=True)
    store.atomic_write_text(out / "data" / "results.csv", df.to_csv(index=False))
    store.atomic_write_text(out / "data" / "leaderboard.csv", board.to_csv())
    if not gaps.empty:
        store.atomic_write_text(out / "data" / "merge_gaps.csv", gaps.to_csv(index=False))
    store.write_json(out / "data" / "cka_vs_gap.json", corr)
    if paired is not None and not paired.empty:
        store.atomic_write_text(out / "data" / "paired_vs_expert.csv", paired.to_csv(index=False))
    return out / "index.html"
