"""The static leaderboard site: jinja2 (autoescape, StrictUndefined) over stored results, per-document
statistics, similarity rows and submission manifests; aggregates, ranks and correlations are derived here,
at build time, never stored. The build writes in place, only the files whose inputs changed, each atomically
(sitecache.Outputs); a build that stops half-way leaves no keys, and the next one makes every file again."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _js  # a string as json.dumps writes it (ensure_ascii)
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from . import analysis, inference, plots, report, schema, scoring, sitecache, store, validity
from .provenance import git_hash, now_utc
from .sitecache import Outputs, cached, code_digest, digest, frame_digest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "site" / "templates"
STATIC = ROOT / "site" / "static"
DEFAULT_OUT = ROOT / "site" / "_build"
PAGE_ROWS = 200
HEAT_ROWS = 200
RANK_BOOT = 200
BACKGROUND_MIN = 100  # results from which the set-level statistics run in a forked process beside the pages
POOL_MIN = 500  # pages to make from which they are made by worker processes (forked), with the per-merge downloads
SCATTERS = [("cka_linear:all", "mean constituent linear CKA, all layers"),
            ("cka_linear:upper", "mean constituent linear CKA, upper blocks"),
            ("task_cosine:all", "mean task-vector cosine"),
            ("loss_barrier:all", "mean loss barrier (bits per byte)")]
ARM_UNIT = {"lm": "bits per byte", "mt": "chrF++"}
ARM_NAME = {"lm": "language modelling", "mt": "translation"}
SHOWN_METHOD_ROWS = ("cka_linear:all", "loss_barrier:all", "task_cosine:all")


@dataclass
class SiteData:
    """Everything the site shows, read from files: results, per-document statistics, similarity, manifests."""

    suite: dict
    results: list[schema.ResultsFile]
    similarity: pd.DataFrame = field(default_factory=pd.DataFrame)
    merges: dict[str, list[str]] = field(default_factory=dict)       # merge -> constituents
    manifests: dict[str, dict] = field(default_factory=dict)         # submission id -> manifest + recipe text
    docs: dict[str, schema.DocsFile] = field(default_factory=dict)   # model -> per-document statistics
    neurons: pd.DataFrame = field(default_factory=pd.DataFrame)      # per-model neuron rows (with a model column)
    movement: pd.DataFrame = field(default_factory=pd.DataFrame)     # family members' distance from initialisation
    method_records: list = field(default_factory=list)               # schema.MethodScenarioFile of this suite and preset
    method_specs: dict[str, dict] = field(default_factory=dict)      # method id -> its spec as benchmarked
    methods_dir: Path | None = None                                  # where method_records lie (merge results linked)
    result_keys: list[str] | None = None  # sha256 of each results file as read (computed from results when not given)


_SPEC = {d: f".{d}f" for d in range(7)}


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, _SPEC.get(digits) or f".{digits}f")


def pval(v) -> str:
    """A p-value for people: '< 0.001' rather than a row of zeros."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def heat(v: float | None) -> str:
    """CSS class for a relative gap in percent: h-n3..h-n1 losses, h-0 about even, h-p1..h-p3 gains."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "h-na"
    for bound, level in ((40, 3), (15, 2), (5, 1)):
        if abs(v) >= bound:
            return f"h-{'n' if v < 0 else 'p'}{level}"
    return "h-0"


@functools.lru_cache(maxsize=1 << 16)
def slug(name: str) -> str:
    """A model's name as it stands in addresses and data files (ids are already restricted; family names too); kept
    per name, as a build asks for every model's several times."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


_SPECIAL = re.compile(r"[&<>\"']").search


def _esc(v) -> str:
    """v as HTML text: escaped (markupsafe) when it holds a character that needs it; most cells (numbers, task
    names) do not, and skipping the escape for them halves the cost of a leaderboard row."""
    s = v if isinstance(v, str) else str(v)
    return str(escape(s)) if _SPECIAL(s) else s


MODEL_VIEW = "model.html"  # draws any model's page in the browser from its data file (site/static/model.js)
MODEL_SHARDS = 256  # model data files, data/models/00.js to ff.js; a model's is shard_of(its slug)
SCORE_VIEW = ("task", "metric", "value", "ci_low", "ci_high", "n")  # a model's data: its tables' columns (and signature)
GAP_VIEW = ("task", "reference", "ref_model", "merge_value", "ref_value", "gap", "rel_gap_pct")
PAIRED_VIEW = ("task", "expert", "delta", "ci_low", "ci_high", "p_value")
SIM_VIEW = ("a", "b", "relation", "layer", "value")
FIXED_COLUMNS = {"value", "ci_low", "ci_high", "merge_value", "ref_value", "gap", "rel_gap_pct", "delta", "p_value"}
DATA_DIGITS = 5  # decimals of the numbers in the model data files (pages show 3; the downloads hold every digit)


def shard_of(slug_: str) -> int:
    """The data file that holds a model (0 to MODEL_SHARDS - 1): the 32-bit FNV-1a hash (Fowler, Noll and Vo) of its
    slug's UTF-8 bytes, modulo MODEL_SHARDS; site/static/model.js computes the same to find it."""
    h = 0x811C9DC5
    for b in slug_.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % MODEL_SHARDS


def model_href(slug_: str, root: str = "") -> str:
    """The address of a model's page: the model view with the model's slug."""
    return f"{root}{MODEL_VIEW}?m={slug_}"


def _json_column(a: np.ndarray, fixed: bool) -> list:
    """A column as JSON values, a missing one as None. fixed: numbers as integers in units of 10^-DATA_DIGITS (JSON
    writes integers several times faster than floats; model.js divides), one too large for that as [value], an
    infinite one as None; else values as they are."""
    if fixed:
        a = np.asarray(a, dtype=float) if a.dtype.kind != "f" else a  # None (object columns) becomes NaN
        ok = np.isfinite(a)
        big = ok & (np.abs(a) >= 1e9)
        out = np.rint(np.where(ok & ~big, a, 0.0) * 10 ** DATA_DIGITS).astype(np.int64).tolist()
        for i in np.flatnonzero(big).tolist():
            out[i] = [float(a[i])]
    elif a.dtype.kind in "iub":
        return a.tolist()
    else:
        out, ok = a.tolist(), ~pd.isna(a)
    for i in np.flatnonzero(~ok).tolist():
        out[i] = None
    return out


def _score_groups(task: np.ndarray, spans: list[tuple[int, int]], order: dict[str, int]) -> list[np.ndarray]:
    """Per model (its rows of the tidy rows at spans[k] = [start, end), as tidy_rows made them from its results file;
    task: the rows' task column): the positions of its rows in the order its page shows them: tasks in `order`
    (tasks it does not know after, in the order they first appear), each task's rows as stored."""
    if not spans:
        return []
    lens = [b - a for a, b in spans]
    pos = np.concatenate([np.arange(a, b) for a, b in spans])
    owner = np.repeat(np.arange(len(spans)), lens)
    tcode, tnames = pd.factorize(task[pos])
    known = np.array([order.get(t, len(order)) for t in tnames], dtype=np.int64)[tcode]
    first = np.zeros(len(pos), dtype=np.int64)
    if (known == len(order)).any():  # a task of no known order: by its first row in the model's rows
        first = pd.Series(np.arange(len(pos))).groupby([owner, tcode]).transform("min").to_numpy()
    srt = np.lexsort((np.arange(len(pos)), first, known, owner))
    return np.split(pos[srt], np.cumsum(lens)[:-1])


def _mean_expert_gap(gaps: pd.DataFrame) -> dict[str, float]:
    """Per merge: the mean relative gap (%) against its constituent experts."""
    e = gaps[gaps["reference"] == "expert"].dropna(subset=["rel_gap_pct"])
    return e.groupby("merge")["rel_gap_pct"].mean().to_dict()


def _model_seed(seed: int, model: str) -> list[int]:
    """The seed of one model's draws: the suite's seed and the model's name, so a model's resamples do not depend
    on which other models are in the build (a new submission leaves every other model's draws as they were)."""
    return [seed, int.from_bytes(hashlib.sha256(model.encode("utf-8")).digest()[:8], "little")]


def score_samples(s: pd.DataFrame, docs: dict[str, schema.DocsFile], suite: dict, tasks: dict,
                  n_boot: int = RANK_BOOT, chunk: int = 500) -> tuple[list[str], np.ndarray]:
    """(models, (len(models), n_boot)): each model's babel score under the bootstrap, -inf without a live task.

    s: analysis.scored rows. Each live task's shown metric is resampled: the bootstrap over documents where the
    model's per-document statistics hold it (bits per byte, chrF++, XMI; every model of a task on the same document
    indices), else a normal with the row's standard error, drawn from the model's own generator (_model_seed). It is
    normalized exactly as on the leaderboard (analysis.normalized, floor and expert at their point estimates; a
    translation score without signal of its own capped at 0), and a resample's babel score is the mean over the
    model's live tasks. A model's row depends on its own rows, the task table and the seed only; models are done
    `chunk` at a time (the resamples of 10,000 models at once would take gigabytes).
    """
    models = sorted(s["model"].unique())
    live = s[s["live"].to_numpy(dtype=bool)].sort_values(["model", "task"], kind="stable")
    model = live["model"].to_numpy(dtype=object)
    cols = (live["task"].to_numpy(dtype=object), live["value"].to_numpy(dtype=float),
            pd.to_numeric(live["stderr"], errors="coerce").fillna(0.0).to_numpy(dtype=float), live["credited"].to_numpy(dtype=bool))
    starts = np.flatnonzero(np.r_[True, model[1:] != model[:-1]]) if len(model) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(model)]
    out = np.full((len(models), n_boot), -np.inf)
    row_of = {m: i for i, m in enumerate(models)}
    idx_of: dict[int, np.ndarray] = {}
    for c in range(0, len(starts), chunk):
        lo, hi = starts[c], ends[min(c + chunk, len(starts)) - 1]
        part = slice(lo, hi)
        sums = _live_samples(model[part], *(x[part] for x in cols), starts[c:c + chunk] - lo, docs, suite, tasks, n_boot, idx_of)
        at = np.array([row_of[m] for m in model[starts[c:c + chunk]]], dtype=np.intp)
        out[at] = sums / (ends[c:c + chunk] - starts[c:c + chunk])[:, None]
    return models, out


def _live_samples(model, task, value, stderr, credited, starts, docs, suite, tasks, n_boot, idx_of) -> np.ndarray:
    """(len(starts), n_boot): per model (its live rows from starts on, consecutive), the sum over its live tasks
    of each resample's normalized score (score_samples)."""
    bounds = np.r_[starts, len(model)]
    samples = np.empty((len(model), n_boot))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        samples[a:b] = np.random.default_rng(_model_seed(suite["seed"], model[a])).standard_normal((b - a, n_boot))
    samples *= stderr[:, None]
    samples += value[:, None]
    for k in (np.flatnonzero([m in docs for m in model]) if docs else ()):
        tv, td = tasks[task[k]], docs[model[k]].tasks.get(task[k])
        if td is None:
            continue
        idx = idx_of.setdefault(len(td.ids), scoring.bootstrap_indices(len(td.ids), suite["seed"], n_boot))
        if tv.metric in ("bits_per_byte", "chrf++") and (td.ll if tv.kind == "lm" else td.stats) is not None:
            samples[k] = analysis._boot_primary(tv.kind, td, idx, suite, tv.language)[1]
        elif tv.metric == "xmi" and (x := validity.xmi_boot(td, idx)) is not None:
            samples[k] = x
    for t, rows in pd.Series(np.arange(len(task))).groupby(task).indices.items():
        tv = tasks[t]
        norm = analysis.normalized(samples[rows], tv.floor_value, tv.expert_value, tv.higher_is_better)
        samples[rows] = np.where(credited[rows, None], norm, np.minimum(norm, 0.0))
    return np.add.reduceat(samples, starts, axis=0)


def _stable_order(a: np.ndarray) -> np.ndarray:
    """a.argsort(1, kind='stable') (equal values, NaN among them, in column order) by numpy's default sort, which is
    four times faster on rows of ten thousand, then each run of equal values put back in column order."""
    order = a.argsort(1)
    s = np.take_along_axis(a, order, 1)
    same = (s[:, 1:] == s[:, :-1]) | (np.isnan(s[:, 1:]) & np.isnan(s[:, :-1]))
    if same.any():  # the places in runs of equal values, row by row: sorted by (row, run, column) into themselves
        run = np.concatenate([np.zeros((len(s), 1), np.int64), np.cumsum(~same, axis=1)], axis=1)
        tied = np.zeros(s.shape, bool)
        tied[:, 1:] |= same
        tied[:, :-1] |= same
        r, c = np.nonzero(tied)
        order[r, c] = order[r, c][np.lexsort((order[r, c], run[r, c], r))]
    return order


def ranks_of(models: list[str], samples: np.ndarray) -> dict:
    """95% interval of each model's rank over the columns of samples ((models, n_boot) scores, higher is better;
    ties ranked in the order of models)."""
    if not models:
        return {}
    by_boot = np.ascontiguousarray(-samples.T)  # (n_boot, models): each resample's scores in a row
    order = _stable_order(by_boot)              # models best first, per resample
    ranks = np.empty(order.shape, np.int64)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, len(models) + 1), order.shape), axis=1)
    # each model's ranks sorted first: percentile's partition of a sorted column is quick (same values, twice as fast)
    lo, hi = np.percentile(np.sort(ranks, axis=0), [2.5, 97.5], axis=0).astype(int)
    return {m: (int(lo[i]), int(hi[i])) for i, m in enumerate(models)}


def rank_intervals(df: pd.DataFrame, docs: dict[str, schema.DocsFile], suite: dict, tasks: dict,
                   n_boot: int = RANK_BOOT, scored: pd.DataFrame | None = None) -> dict:
    """95% interval of each model's leaderboard rank under the bootstrap (score_samples, then ranks_of; a model
    without a live task ranks last). tasks: task -> validity.TaskValidity."""
    s = analysis.scored(df, tasks) if scored is None else scored
    return ranks_of(*score_samples(s, docs, suite, tasks, n_boot))


METRIC_LABEL = {"bits_per_byte": "bpb", "chrf++": "chrF++", "xmi": "XMI", "bleu": "BLEU"}
NO_SIGNAL = ("no signal: this model's own interval against its shuffled-source control includes zero; "
             "the score counts at most 0 in the babel score")
NO_CONTROL = ("no control: this model's results predate the shuffled-source control; re-evaluate it; "
              "the score counts at most 0 in the babel score")
_NS_MARK = f' <abbr class="ns" title="{escape(NO_SIGNAL)}">ns</abbr>'
_NC_MARK = f' <abbr class="ns" title="{escape(NO_CONTROL)}">nc</abbr>'


def _task_column(tv) -> dict:
    """How the leaderboard shows one task: its metric, label, digits, and whether it is live (and why not)."""
    return {"task": tv.task, "metric": tv.metric, "label": METRIC_LABEL.get(tv.metric, tv.metric), "live": tv.live,
            "reason": tv.reason, "digits": 2 if tv.metric in ("chrf++", "bleu") else 3, "checks_signal": tv.signal is not None,
            "cls": ("" if tv.live else "dead") + (" lm" if tv.kind == "lm" else " mt")}


def _score_cell(value, col: dict, signal) -> dict:
    """One leaderboard cell: the formatted value, its CSS class (dead: the task is not live; nosig: the model's
    own score is not shown to carry signal against its control) and its mark: 'ns' where the interval includes
    zero, 'nc' where no control is stored."""
    mark = "" if value is None or not col["checks_signal"] or signal is True else "ns" if signal is False else "nc"
    dead = "" if col["live"] else " dead"
    return {"text": _fmt(value, col["digits"]), "cls": "num" + dead + (" nosig" if mark else ""), "ns": mark == "ns",
            "nc": mark == "nc", "rate_cls": "num rate" + dead}


def _score_html(c: dict) -> str:
    """One task cell of a leaderboard row (the cell _score_cell describes), escaped."""
    mark = _NS_MARK if c["ns"] else _NC_MARK if c["nc"] else ""
    return f'<td class="{c["cls"]}">{_esc(c["text"])}{mark}</td>'


def _board_parts(r: dict) -> list[str]:
    """A leaderboard row (site.build's board_row) as the HTML pieces around its rank and rank interval: the row's
    opening tag, the cells after the rank up to the score, the score, the overall table's cells after the rank
    interval, and the language-modelling and translation tables' cells after their lead. Built as strings: ten
    thousand rows of a dozen cells each are too many template calls."""
    attrs = (f'<tr class="{escape(r["kind"])}" data-arm="{escape(r["arm"])}" data-method="{escape(r["method"])}" '
             f'data-constituents="{escape(" ".join(r["constituents"]))}">')
    lead = (f'<th scope="row"><a href="{escape(model_href(r["slug"]))}">{escape(r["model"])}</a></th>'
            f'<td>{escape(r["kind"])}</td><td>{escape(r["arm"])}</td><td>{escape(r["method"])}</td>')
    lm = "".join(_score_html(v) for v in r["lm"])
    mt_cells = [_score_html(v) for v in r["mt"]]
    mt = "".join(mt_cells)
    rates = "".join(f'{h}<td class="{v["rate_cls"]}">{_fmt(e, 2)}</td><td class="{v["rate_cls"]}">{_fmt(o, 2)}</td>'
                    for h, v, e, o in zip(mt_cells, r["mt"], r["empty"], r["off"]))
    return [attrs, lead, f'<td class="num"><strong>{_fmt(r["score"], 2)}</strong></td>',
            f'\n<td class="num">{r["n_live"]}</td><td class="num">{_fmt(r["bpb"], 3)}</td><td class="num">{_fmt(r["chrf"], 2)}</td>\n{lm}{mt}</tr>',
            f'<td class="num">{_fmt(r["bpb"], 3)}</td>{lm}</tr>', f'<td class="num">{_fmt(r["chrf"], 2)}</td>{rates}</tr>']


def _board_html(parts: list[str], rank: int, rank_ci: tuple[int, int]) -> dict[str, Markup]:
    """A leaderboard row of the three tables of a leaderboard page (overall, lm, mt) from _board_parts, its rank and
    its rank interval."""
    attrs, lead, score, overall, lm, mt = parts
    head = f'{attrs}<td class="num">{rank}</td>{lead}'
    return {"overall": Markup(f'{head}{score}<td class="num">{rank_ci[0]}–{rank_ci[1]}</td>{overall}'),
            "lm": Markup(head + lm), "mt": Markup(head + mt)}


def _board_bodies(board_rows: list[dict]) -> dict[str, Markup]:
    """The bodies of a leaderboard page's three tables (overall, lm, mt): its rows (_board_html of each board row's
    parts, rank and rank interval), each followed by a line break, joined here (a template loop over ten thousand
    rows costs more)."""
    rows = [_board_html(r["parts"], r["rank"], r["rank_ci"]) for r in board_rows]
    return {t: Markup("".join(f"{r[t]}\n" for r in rows)) for t in ("overall", "lm", "mt")}


def validity_view(vtable: list[dict]) -> list[dict]:
    """The methods page's validity table: one row per task and candidate metric, formatted."""
    out = []
    for r in vtable:
        out.append({"task": r["task"], "metric": METRIC_LABEL.get(r["metric"], r["metric"]), "expert": r["expert"],
                    "score_name": r.get("score", r["metric"]), "control": r["control"],
                    "expert_value": _fmt(r["expert_value"]),
                    "expert_ci": f"[{_fmt(r['expert_ci_low'])}, {_fmt(r['expert_ci_high'])}]" if r["expert_ci_low"] is not None else "",
                    "control_value": _fmt(r["control_value"]), "difference": _ci(r["difference"], r["diff_ci_low"], r["diff_ci_high"], 3),
                    "floor_value": _fmt(r["floor_value"]),
                    "floor_difference": _ci(r["floor_difference"], r["floor_ci_low"], r["floor_ci_high"], 3),
                    "live": "yes, primary" if r["live"] else "not used" if r["task_live"] else "no",
                    "cls": "" if r["task_live"] else "dead",
                    "reason": r["reason"], "interval": r["interval"]})
    return out


def _ci(v, lo, hi, digits=2) -> str:
    return "–" if v is None or v != v else f"{v:+.{digits}f} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _diagnostics_view(tables: dict) -> tuple[list[dict], dict, list, list[dict]]:
    """What the analysis page shows of the diagnostics tables: set-level correlation rows (per arm: the pooled row
    of every diagnostic, strongest first, then the per-method rows of SHOWN_METHOD_ROWS), the leave-one-language-out
    predictors, neuron histograms by layer, and the neuron movement."""
    corr = tables["set_correlations"]
    rows = []
    if not corr.empty:
        c = corr.assign(order=corr.rho.abs().fillna(-1), pooled=corr.method == inference.POOLED)
        c = c[c.pooled | c.diagnostic.isin(SHOWN_METHOD_ROWS)]
        c = c.sort_values(["arm", "pooled", "order"], ascending=[True, False, False])
        for r in c.itertuples():
            rows.append({"arm": ARM_NAME.get(r.arm, r.arm), "diagnostic": r.diagnostic, "method": r.method, "n": int(r.n),
                         "merges": int(r.merges), "rho": _ci(r.rho, r.rho_lo, r.rho_hi), "rho_p": pval(r.rho_p),
                         "verdict": inference.detected(r.rho_lo, r.rho_hi, r.rho_p),
                         "tau": _ci(getattr(r, "tau", None), getattr(r, "tau_lo", None), getattr(r, "tau_hi", None)),
                         "partial": _ci(getattr(r, "partial_rho", None), getattr(r, "partial_lo", None), getattr(r, "partial_hi", None))})
    svgs = []
    layers = tables["neuron_layers"]
    if not layers.empty:
        kind = lambda m: ("mono" if m.startswith("mono-") else "cpt" if m.startswith("cpt-") else "mt-en-x" if m.startswith("mt-en-")
                          else m if m in ("mixed", "mt-all") else "init" if m.startswith("init-") else "merges")
        lay = layers.assign(kind=[kind(m) for m in layers.model])
        for metric, title in (("ap_count", "AP-selective units (top 1% per language)"), ("lape_count", "LAPE neurons")):
            piv = lay[lay.metric == metric].groupby(["kind", "layer"])["share"].mean().unstack("layer").sort_index(axis=1)
            series = {k: [100 * v for v in row] for k, row in zip(piv.index, piv.to_numpy())}
            first = int(piv.columns.min()) if len(piv.columns) else 0
            desc = (f"Share (%) of each layer's units that are language-specific, averaged over the models of each kind; "
                    f"layer {first} is the first plotted ({'embedding output dimensions' if first == 0 else 'block 1'}).")
            svgs.append({"title": title, "svg": Markup(plots.lines(series, title, f"layer (from {first})", "% of units", desc))})
    mv = tables["neuron_movement"]
    movement = []
    if not mv.empty:
        for (metric, rel), g in mv.groupby(["metric", "relation"]):
            movement.append({"metric": metric, "relation": rel, "n": len(g), "mixed": _fmt(g["mixed"].mean()),
                             "finetuned": _fmt(g["finetuned"].mean()), "delta": f"{g['delta'].mean():+.4f}"})
    return rows, tables["lolo"], svgs, movement


_PAGES: dict | None = None
BUILD_STATS: dict = {}  # what the last build computed and reused (stats_hit, models_written, files_made, phases): for the benchmark and tests


def _write_model_shards(shards: list[int]) -> tuple[dict, int, int]:
    """Write the model data files that build found changed (data/models/<shard>.js, from _PAGES, set before forking).
    Each calls window.babelShard with {"models": {slug: a model}, "scores", "gaps", "paired", "sim": tables of all
    its models' rows as columns, "sigs": the signatures the scores carry}. A model holds its results file's
    provenance, its manifest, and for each table [first row, rows] of its own rows (null without any): its results
    rows in page order (each row's signature as its place in sigs, -1 without), gaps, paired tests and similarity
    rows; all determined by its own inputs and the family (the experts and floor every score and gap is measured
    against). site/static/model.js draws it in model.html; its rank, which every new submission can move, comes
    from data/ranks.js. Returns (keys, reused, made)."""
    job = _PAGES
    outs = job["outputs"].child()
    data, members, df = job["data"], job["members"], job["df"]
    indices = [i for s in shards for i in members[s]]  # by shard: each shard's rows of a table are consecutive
    names = {i: data.results[i].model.name for i in indices}
    shard_at = {i: s for s in shards for i in members[s]}
    # the score rows: the tidy rows, and any other model's (a failed one's, from its results file) after them
    source = {c: df[c].to_numpy() for c in SCORE_VIEW + ("signature",)} if not df.empty else {}
    span = dict(job["spans"])
    extra = [i for i in indices if i not in span and data.results[i].rows]
    if extra:
        more = analysis.tidy([data.results[i].model_copy(update={"status": "ok"}) for i in extra])
        at = len(df) if not df.empty else 0
        source = {c: np.concatenate([source[c], more[c].to_numpy()]) if source else more[c].to_numpy()
                  for c in SCORE_VIEW + ("signature",)}
        for i in extra:
            span[i] = (at, at + len(data.results[i].rows))
            at += len(data.results[i].rows)
    scored = [i for i in indices if i in span]
    groups = _score_groups(source["task"], [span[i] for i in scored], job["order"]) if scored else []
    tables = {"scores": _table_of(source, SCORE_VIEW, groups, [shard_at[i] for i in scored], scored)}
    for table, name, columns in (("gaps", "gap", GAP_VIEW), ("paired", "paired", PAIRED_VIEW), ("sim", "sim", SIM_VIEW)):
        rows_of, frame = job[f"{name}_rows_of"], job[name]
        have = [i for i in indices if names[i] in rows_of]
        tables[table] = _table_of({c: frame[c].to_numpy() for c in columns} if have else {}, columns,
                                  [rows_of[names[i]] for i in have], [shard_at[i] for i in have], have)
    sig = pd.factorize(source["signature"][np.concatenate(groups)]) if scored else (np.zeros(0, dtype=np.int64), [])
    number = lambda v: None if v is None or v != v else v
    for s in shards:
        out = {"models": {}}
        for t, (cols, at, ranges) in tables.items():
            a, b = ranges.get(s, (0, 0))
            out[t] = {c: v[a:b] for c, v in cols.items()}
            if t == "scores":  # the shard's signatures, numbered in the order they first appear
                codes = sig[0][a:b]
                used, first = np.unique(codes[codes >= 0], return_index=True)
                used = used[np.argsort(first)]
                local = np.full(len(sig[1]) + 1, -1, dtype=np.int64)  # the last: no signature (code -1)
                local[used] = np.arange(len(used))
                out["sigs"] = [sig[1][u] for u in used.tolist()]
                out[t]["sig"] = local[codes].tolist()
        for i in members[s]:
            res, name = data.results[i], names[i]
            man, board, p = data.manifests.get(name, {}), job["board_of"].get(name), res.provenance
            out["models"][slug(name)] = {
                "id": name, "kind": res.model.kind, "method": res.model.method, "arm": res.model.arm,
                "constituents": list(res.model.constituents), "base_model": res.model.base_model, "status": res.status,
                "error": res.error, "title": man.get("title"), "authors": man.get("authors"), "recipe": man.get("recipe_text"),
                "score": number(board["score"]) if board else None, "ns": board["ns_tasks"] if board else [],
                "nc": board["nc_tasks"] if board else [],
                **{t: at.get(i) for t, (_, at, _) in tables.items()},
                "sha256": res.model.sha256, "suite": res.suite, "suite_sha256": res.suite_sha256, "tasks": res.tasks,
                "provenance": {"harness": p.harness_version, "git": p.git, "device": p.device, "dtype": p.dtype,
                               "batch": p.batch, "seed": p.seed, "bootstrap": p.bootstrap, "created_utc": p.created_utc,
                               "wall_s": p.wall_s, "limit": p.limit, "packages": p.packages,
                               "merge": {"mergekit": p.merge.get("mergekit"), "seed": p.merge.get("seed")} if p.merge else None}}
        outs._write(shard_path(s), "window.babelShard(" + json.dumps(out, default=str) + ");\n")
        outs.made += 1
    return outs.keys, outs.reused, outs.made


def _table_of(source: dict[str, np.ndarray], columns: tuple[str, ...], groups: list[np.ndarray], shard: list[int],
              owner: list[int]) -> tuple[dict[str, list], dict[int, list[int]], dict[int, tuple[int, int]]]:
    """The rows of owners (owner[k]'s at positions groups[k] of the source columns, owners in shard order, shard[k]
    owner[k]'s shard) as one table: (columns as JSON values (_json_column, FIXED_COLUMNS fixed), each owner's
    [first row, rows] in its shard's part, each shard's [start, end) of the columns)."""
    if not groups:
        return {c: [] for c in columns}, {}, {}
    pos = np.concatenate(groups)
    cols = {c: _json_column(source[c][pos], c in FIXED_COLUMNS) for c in columns}
    ends = np.cumsum([len(g) for g in groups]).tolist()
    at, ranges = {}, {}
    for k, (o, s) in enumerate(zip(owner, shard)):
        start = ends[k - 1] if k else 0
        first = ranges.setdefault(s, [start, ends[k]])
        first[1] = ends[k]
        at[o] = [start - first[0], ends[k] - start]
    return cols, at, {s: tuple(r) for s, r in ranges.items()}


def shard_path(shard: int) -> str:
    """A model data file's path in the site."""
    return f"data/models/{shard:02x}.js"


def model_data(out: Path, name: str) -> dict | None:
    """What a built site (in `out`) holds for one model's page, as model.js reads it (numbers in units of
    10^-DATA_DIGITS), with its scores' signatures as strings ("signature"); None when it has no such model."""
    path = out / shard_path(shard_of(slug(name)))
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    head, tail = "window.babelShard(", ");\n"
    if not (text.startswith(head) and text.endswith(tail)):
        raise ValueError(f"{path}: not a model data file (it must be {head}...{tail.strip()}); build the site again")
    shard = json.loads(text[len(head):-len(tail)])
    model = shard["models"].get(slug(name))
    for table in ("scores", "gaps", "paired", "sim") if model else ():
        if model[table] is not None:
            a, n = model[table]
            model[table] = {c: v[a:a + n] for c, v in shard[table].items()}
    if model and model["scores"]:
        model["scores"]["signature"] = [shard["sigs"][k] if k >= 0 else None for k in model["scores"].pop("sig")]
    return model


def _write_tables() -> tuple[dict, int, int]:
    """leaderboard.csv and the per-merge downloads (merge gaps, paired tests, similarity: grouped CSVs, a group made
    again only when its merge's key changed), from _PAGES['tables']; returns (keys, reused, made) for Outputs.merge."""
    job = _PAGES["tables"]
    outs = _PAGES["outputs"].child()
    outs.file("data/leaderboard.csv", job["board_key"], lambda p: p.write_bytes(sitecache.csv_bytes(job["board"].reset_index())))
    for name, frame, key_of in job["grouped"]:
        outs.grouped_csv(f"data/{name}.csv", frame, "merge", key_of)
    return outs.keys, outs.reused, outs.made


RESULTS_DOWNLOAD = "data/results.jsonl.gz"
_DOWNLOAD: dict | None = None  # the results download's job, set before forking (as _PAGES)


_TIDY: dict | None = None  # the results files whose tidy rows the background process makes, set before forking


def _tidy_part() -> tuple[dict, list[int]]:
    """analysis.tidy_rows of _TIDY's results files, each string column as (int32 codes, its values; -1: None), which
    pickle in a fraction of the time that ten thousand strings take."""
    cols, lens = analysis.tidy_rows(_TIDY["results"])
    out = {}
    for c, v in cols.items():
        if c in TIDY_STRINGS:
            codes, uniques = pd.factorize(v, use_na_sentinel=True)
            out[c] = (codes.astype(np.int32), list(uniques))
        else:
            out[c] = v
    return out, lens


def _results_download() -> tuple[dict, int, int]:
    """RESULTS_DOWNLOAD (Outputs.concat of results_member of every results file; only the lines whose results file
    changed are made, the others are the last build's bytes) by a child of _DOWNLOAD['outputs']: (keys, reused,
    made). It reads the results files alone, so a large build runs it in a forked process from its start."""
    job = _DOWNLOAD
    outs = job["outputs"].child()
    outs.concat(RESULTS_DOWNLOAD, job["items"], {i: results_member(job["results"][i]) for i in job["need"]})
    return outs.keys, outs.reused, outs.made


def results_member(res: schema.ResultsFile) -> bytes:
    """A model's results file as one JSON line in its own gzip member (mtime 0: the same bytes on every build);
    members concatenate into one gzip stream, so the download is assembled from the parts that changed."""
    import gzip

    return gzip.compress((res.model_dump_json() + "\n").encode("utf-8"), compresslevel=1, mtime=0)


def _row_keys(frame: pd.DataFrame, by: str) -> dict[str, str]:
    """Per value of `by`: the sha256 of its rows (pandas' row hashes, in order)."""
    if frame is None or frame.empty:
        return {}
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    codes, names = pd.factorize(frame[by])
    at = np.flatnonzero(codes >= 0)
    at = at[np.argsort(codes[at], kind="stable")]  # each value's rows together, in their order
    c = codes[at]
    buf = h[at].astype("<u8").tobytes()
    cuts = (np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1, len(c)] * 8).tolist()  # each value's bytes of buf
    sha = hashlib.sha256
    return {names[c[a // 8]]: sha(buf[a:b]).hexdigest() for a, b in zip(cuts, cuts[1:])}


# -- the build ---------------------------------------------------------------------------------------
def _method_leaderboard(env: Environment, outs: Outputs, site_key: str, ctx: dict, data: SiteData, set_diag: pd.DataFrame,
                        scored: pd.DataFrame | None = None) -> None:
    """methods-leaderboard.html, method/<id>.html and the method downloads (methodboard's tables); scored: the family
    results' normalized scores (analysis.scored), the scenario base models' scores each method must beat."""
    import yaml

    from . import methodboard, methods
    from .scenarios import SCENARIO_SET, scenarios

    seed = data.suite["seed"]
    # the controls read the scenario base models' scores only: the key and the tables take theirs, so a new
    # submission (a merge, never a base) leaves both as they were
    if scored is not None and not scored.empty:
        bases = {r.base for r in data.method_records}
        scored = scored[scored["model"].isin(bases).to_numpy()].reset_index(drop=True)

    def tables():
        t = methodboard.controls(methodboard.table(data.method_records), methodboard.base_norms(scored),
                                 validity.rule(data.suite).floor)
        return t, methodboard.summary(t, seed), methodboard.win_rates(t, seed), methodboard.failure_predictors(t, set_diag, seed)

    key = digest(code_digest("methodboard.py", "rankstats.py", "scenarios.py", "validity.py"), seed, frame_digest(set_diag),
                 None if scored is None else frame_digest(scored), [r.model_dump(mode="json") for r in data.method_records])
    (df, summ, wins, pred), _ = cached(stats_folder(outs.out), "methods", key, tables)
    page = lambda rel, produce: outs.text(rel, digest(site_key, rel), produce)
    table = lambda rel, frame: outs.file(rel, digest(site_key, rel), lambda p: frame.to_csv(p, index=False))
    names = list(summ["method"]) + sorted(set(df["method"]) - set(summ["method"]))
    known = [s.id for s in scenarios()]
    order = [s for s in known if s in set(df["scenario"])] + sorted(set(df["scenario"]) - set(known))
    values = {(m, sc): v for m, sc, v in zip(df["method"], df["scenario"], df["score"])}
    desc = (f"Normalized test score of {len(names)} methods (rows, best mean first) on {len(order)} scenarios (columns, in "
            "the scenario set's order): red at 0 (the untrained floor) or below, white at 50, blue at 100 (the expert) or "
            "above; grey where the method has no score (not applicable, or failed).")
    svg = Markup(plots.heatmap(names, order, values, "Methods x scenarios: normalized score", desc)) if names else ""
    rows = summ.to_dict("records")
    bd = methodboard.translation_breakdown(df, seed)
    page("methods-leaderboard.html", lambda: env.get_template("methods-leaderboard.html.j2").render(
        **ctx, rows=rows, methods=names, wins={(w["method"], w["other"]): w for w in wins.to_dict("records")},
        heatmap_svg=svg, heatmap_desc=desc, scenario_set=SCENARIO_SET, n_scenarios=len(scenarios()),
        rule=methods.TUNING_RULE, floor=validity.rule(data.suite).floor, breakdown=bd.to_dict("records"),
        grouping=methodboard.GROUPING))
    linked = {}  # (method, scenario) -> the merge's results file, copied beside the method page
    for key, rel in methodboard.merge_files(df).items():
        src = None if data.methods_dir is None else Path(data.methods_dir) / rel
        if src is not None and src.is_file() and not src.is_symlink():
            outs.file(f"method/{rel}", digest(site_key, rel, sitecache.digest(src.read_bytes())), lambda p, src=src: shutil.copyfile(src, p))
            linked[key] = rel
    tpl = env.get_template("method.html.j2")
    for m in names:
        g = df[df["method"] == m]
        p_text = lambda p: ", ".join(f"{k}={v}" for k, v in p.items()) or "(none)"
        rows_m = [{**r, "params": p_text(r["parameters"]), "link": linked.get((m, r["scenario"])),
                   "merges": [{**q, "params": p_text(q["parameters"])} for q in r["points"]]} for r in g.to_dict("records")]
        sm = summ[summ["method"] == m].to_dict("records")
        spec = {k: v for k, v in data.method_specs.get(m, {}).items() if v is not None}
        page(f"method/{slug(m)}.html", lambda m=m, sm=sm, spec=spec, rows_m=rows_m: tpl.render(
            **{**ctx, "root": "../"}, method=m, summary=sm[0] if sm else None, rows=rows_m,
            spec_text=yaml.safe_dump(spec, sort_keys=False, allow_unicode=True) if spec else "(not stored)",
            predictors=pred[pred["method"] == m].to_dict("records"), breakdown=bd[bd["method"] == m].to_dict("records"),
            grouping=methodboard.GROUPING, floor=validity.rule(data.suite).floor))
    table("data/methods.csv", df.assign(parameters=df["parameters"].map(json.dumps), checkpoint=df["checkpoint"].map(json.dumps),
                                        points=df["points"].map(json.dumps)))
    table("data/method_translation.csv", bd)
    page("data/methods.json", lambda: json.dumps([r.model_dump(mode="json") for r in data.method_records], indent=1))
    table("data/method_summary.csv", summ)
    table("data/method_win_rates.csv", wins)
    table("data/method_predictors.csv", pred)


def _env(cache: Path | None = None) -> Environment:
    """The templates' environment; with a cache folder, compiled templates are kept there (jinja2's bytecode cache,
    keyed by each template's name and checked against a hash of its source), so a rebuild does not compile them again."""
    from jinja2 import FileSystemBytecodeCache

    bcc = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        bcc = FileSystemBytecodeCache(str(cache))
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, bytecode_cache=bcc)
    env.filters["fmt"] = _fmt
    env.filters["heat"] = heat
    env.filters["pval"] = pval
    env.filters["slug"] = slug
    env.filters["pairs"] = pairs
    env.filters["codes"] = codes
    return env


def pairs(d: dict, between: str = " ") -> Markup:
    """'k1 v1, k2 v2' of a mapping, escaped (a filter: a template loop with loop.last costs more, ten thousand pages at a time)."""
    return Markup(", ".join(f"{escape(k)}{between}{escape(v)}" for k, v in d.items()))


def codes(items: list) -> Markup:
    """'<code>a</code>, <code>b</code>', escaped (a filter, as pairs)."""
    return Markup(", ".join(f"<code>{escape(c)}</code>" for c in items))


GAP_COLUMNS = ["merge", "task", "task_kind", "language", "reference", "ref_model", "merge_value", "ref_value", "gap",
               "rel_gap_pct"]
TIDY_STRINGS = analysis.MODEL_FIELDS + ("task", "language", "metric", "signature")
STATS_CODE = ("site.py", "analysis.py", "inference.py", "rankstats.py", "replication.py", "report.py", "validity.py",
              "languages.py", "scoring.py", "plots.py", "schema.py", "grid.py", "similarity/groups.py")
PAGE_CODE = STATS_CODE + ("../site/templates", "../site/static")


def _rank_samples(data: SiteData, scored: pd.DataFrame, tasks: dict, folder: Path | None,
                  model_keys: dict[str, str] | None, later: list | None = None) -> tuple[list[str], np.ndarray]:
    """score_samples of every scored model; with a folder, each model's row is kept there (sitecache.rows) by the
    key of its inputs (model_keys: its results and per-document statistics), the task table and the seed, so a
    new submission draws only its own row (later: sitecache._now_or_later)."""
    if folder is None or model_keys is None:
        return score_samples(scored, data.docs, data.suite, tasks)
    models = sorted(scored["model"].unique())
    table = digest([dataclasses.asdict(tv) for tv in tasks.values()], data.suite["seed"], RANK_BOOT)
    keys = sitecache.digests(table, [(m, model_keys.get(m)) for m in models])
    make = lambda idx: score_samples(scored[scored["model"].isin([models[i] for i in idx])], data.docs, data.suite, tasks)[1]
    return models, sitecache.rows(folder, "rank-samples", keys, make, later=later,
                                  version=code_digest("site.py", "analysis.py", "scoring.py", "validity.py", "schema.py"))


def _model_statistics(data: SiteData, df: pd.DataFrame, prev: dict | None = None, prev_keys: dict[str, str] | None = None,
                      own_key: dict[str, str] | None = None, rows_of: dict[str, tuple[int, int]] | None = None) -> dict:
    """What the site derives per model and per merge: the task table, validity rows, scored rows, merge gaps, task
    gaps and own shares, and paired tests against the experts (the leaderboard is _board). prev: the previous
    build's value, with prev_keys and own_key the key of each model's inputs then and now (its results,
    per-document statistics, constituents, and the family's): the frames' rows of models whose key is unchanged
    are taken from prev, only the others are computed (a rebuild after one submission computes one model's), and
    every frame is in the order a computation over all models gives (tested equal). rows_of: each model's rows of
    df (start, end), in df's order, where the caller knows them (else they are found by scanning df)."""
    suite = data.suite
    tasks, vtable = validity.assess(df, suite, data.docs)
    if rows_of is None or df.empty:
        models = list(dict.fromkeys(df["model"].tolist())) if not df.empty else []
    else:
        models = [m for m, (a, b) in rows_of.items() if b > a]
    changed = None
    if prev is not None and prev_keys and own_key:
        changed = {m for m in set(models) | set(data.merges) if prev_keys.get(m) != own_key.get(m)}
        if len(changed) > len(models) / 2:
            changed = None  # most models changed (a new family, new code): compute all at once
    if changed is None:
        scored = analysis.scored(df, tasks)
        merge_gaps = analysis.merge_gaps(df, data.merges) if not df.empty else pd.DataFrame()
        paired = analysis.paired_vs_expert(data.docs, data.merges, suite) if data.docs else pd.DataFrame()
        task_gaps = inference.merge_task_gaps(df, data.merges, tasks)
        shares = inference.own_share(df, data.merges, tasks, scored) if not df.empty else pd.Series(dtype=float)
        runs = {"scored": _runs(scored, "model"), **{k: _runs(v, "merge") for k, v in
                                                     (("merge_gaps", merge_gaps), ("paired", paired), ("task_gaps", task_gaps))}}
    else:
        runs = {}
        prev_runs = prev.get("runs") or {}
        new_merges = {m: c for m, c in data.merges.items() if m in changed}
        # a merge's gaps read its own rows and its references' (the family and other non-merge models)
        if rows_of is None:
            mine = df["model"].isin(changed).to_numpy()
            mine_rows, refs = df[mine], df[mine | ~df["model"].isin(data.merges).to_numpy()]
        else:
            at = lambda names: df.iloc[np.concatenate([np.arange(*rows_of[m]) for m in names] or [np.zeros(0, np.int64)])]
            mine_rows = at([m for m in models if m in changed])
            refs = at([m for m in models if m in changed or m not in data.merges])
        fresh = analysis.scored(mine_rows, tasks)  # the changed models' scored rows
        scored, runs["scored"] = _spliced(prev["scored"], fresh, "model", models, changed, prev_runs.get("scored"))
        made = {"merge_gaps": analysis.merge_gaps(refs, new_merges) if not df.empty else pd.DataFrame(),
                "paired": analysis.paired_vs_expert(data.docs, new_merges, suite) if data.docs else pd.DataFrame(),
                "task_gaps": inference.merge_task_gaps(refs, new_merges, tasks)}
        merge_names = list(data.merges)
        spliced = {k: _spliced(prev[k], v, "merge", merge_names, changed, prev_runs.get(k)) for k, v in made.items()}
        merge_gaps, paired, task_gaps = (spliced[k][0] for k in ("merge_gaps", "paired", "task_gaps"))
        runs.update({k: v[1] for k, v in spliced.items()})
        shares = _spliced_series(prev["shares"], inference.own_share(refs, new_merges, tasks, fresh) if not df.empty
                                 else pd.Series(dtype=float), set(data.merges), changed)
    # the constituent sets' diagnostics (as report.build's set_diagnostics), for the methods leaderboard's predictors
    merge_diag = analysis.merge_diagnostics(data.similarity) if not df.empty else pd.DataFrame()
    set_diag = inference.set_diagnostics(merge_diag, data.merges) if not df.empty else pd.DataFrame()
    return {"tasks": tasks, "vtable": vtable, "merge_gaps": merge_gaps, "paired": paired,
            "scored": scored, "merge_diag": merge_diag, "set_diag": set_diag, "task_gaps": task_gaps, "shares": shares,
            "recomputed": None if changed is None else sorted(changed),  # None: every model
            "runs": runs}  # each frame's runs of rows by model or merge (_runs), for the next rebuild's _spliced


def _board(folder: Path, key: str, df: pd.DataFrame, tasks: dict, scored: pd.DataFrame, prev_key: str | None = None,
           changed: list[str] | None = None, span_of: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """analysis.leaderboard of the tidy rows, cached in folder by the inputs key (beside the per-model statistics).
    With the key of the previous build's (prev_key), the models changed since (changed: _model_statistics'
    'recomputed') and each model's rows of df (span_of), the rows of the changed models are computed and the others'
    taken from the previous board: a model's row reads its own rows only, and the rows are ordered as
    analysis.leaderboard orders them (tested equal)."""
    def make() -> pd.DataFrame:
        if df.empty:
            return pd.DataFrame()
        prev = sitecache.cached_value(folder, "stats-board", prev_key) if prev_key and changed is not None and span_of else None
        if not isinstance(prev, pd.DataFrame) or prev.empty:
            return analysis.leaderboard(df, tasks, scored)
        new = set(changed)
        at = [np.arange(*span_of[m]) for m in changed if m in span_of]
        rows = df.iloc[np.concatenate(at)] if at else df.iloc[:0]
        fresh = analysis.leaderboard(rows, tasks, scored[scored["model"].isin(new).to_numpy()]) if at else prev.iloc[:0]
        keep = np.array([m not in new and m in span_of for m in prev.index.tolist()], dtype=bool)  # (a set: isin is slower)
        out = pd.concat([prev[keep], fresh]) if not fresh.empty else prev[keep]
        # as pivot_table: a task column no model has a value of is left out; the columns in leaderboard's order
        fixed, meta = ["babel_score", "n_live", "mean_bpb", "mean_chrf"], ["kind", "arm", "method"]
        task_cols = sorted(c for c in out.columns if c not in fixed and c not in meta and out[c].notna().any())
        out = out[fixed + task_cols + meta].sort_index()
        return out.sort_values("babel_score", ascending=False, na_position="last", kind="stable")
    return cached(folder, "stats-board", key, make)[0]


LAST_MODELS = "stats-models-last.json"  # in the statistics folder: the last computed per-model statistics' key, and each model's key


def _previous_models(folder: Path) -> tuple[dict | None, dict, str | None]:
    """The per-model statistics the last build in folder computed (sitecache.cached's file), each model's key then,
    and that build's inputs key; (None, {}, None) when there are none."""
    try:
        last = json.loads((folder / LAST_MODELS).read_text(encoding="utf-8"))
        prev = sitecache.cached_value(folder, "stats-models", str(last["key"]))
        return (prev, dict(last["own"]), str(last["key"])) if isinstance(prev, dict) else (None, {}, None)
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}, None


def _spliced_series(prev: pd.Series, fresh: pd.Series, names: set[str], changed: set[str]) -> pd.Series:
    """prev's values of the names that are kept (in names, not changed) and fresh's, in the order of their names
    (a groupby's order, as inference.own_share gives them)."""
    keep = [m in names and m not in changed for m in prev.index] if not prev.empty else []
    parts = [p for p in (prev[keep] if len(keep) else prev, fresh) if not p.empty]
    if not parts:
        return fresh
    return pd.concat(parts).sort_index() if len(parts) > 1 else parts[0]


def _runs(frame: pd.DataFrame, by: str) -> tuple[list, np.ndarray]:
    """The runs of rows of frame with equal `by`, in order: each run's name and its first row."""
    if frame.empty:
        return [], np.zeros(0, np.int64)
    codes, names = pd.factorize(frame[by], use_na_sentinel=False)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return [names[c] for c in codes[starts]], starts


def _spliced(prev: pd.DataFrame, fresh: pd.DataFrame, by: str, order: list[str], changed: set[str],
             runs: tuple[list, np.ndarray] | None = None) -> tuple[pd.DataFrame, tuple[list, np.ndarray]]:
    """prev's rows of the names in order that are not changed, and fresh's rows (the changed ones'), grouped by
    `by` in the order of `order` (each group's rows as they came: a stable sort), indexed 0..n-1; and the runs of
    the result (_runs). runs: prev's runs, where the caller kept them (a rebuild then reads no name of prev's rows)."""
    pos = {m: i for i, m in enumerate(order)}
    p_names, p_starts = runs if runs is not None else _runs(prev, by)
    f_names, f_starts = _runs(fresh, by)
    # every run of both, prev's kept ones first (as they would be concatenated): name, first row, length
    keep = np.array([m in pos and m not in changed for m in p_names], dtype=bool)
    names = [m for m, k in zip(p_names, keep) if k]
    lens = np.diff(np.r_[p_starts, len(prev)]).astype(np.int64)
    starts = np.r_[p_starts[keep], f_starts + len(prev)].astype(np.int64)
    lens = np.r_[lens[keep], np.diff(np.r_[f_starts, len(fresh)])].astype(np.int64)
    names += f_names
    sort = np.argsort(np.array([pos[m] for m in names], dtype=np.int64), kind="stable")
    starts, lens, names = starts[sort], lens[sort], [names[j] for j in sort]
    take = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
    parts = [p for p in (prev, fresh) if not p.empty]
    if not parts:
        out = fresh if prev.empty else prev.iloc[:0]
    else:
        both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        out = both if len(take) == len(both) and np.array_equal(take, np.arange(len(both))) else both.iloc[take]
    return out.reset_index(drop=True), (names, np.r_[0, np.cumsum(lens)[:-1]].astype(np.int64))


def _set_statistics(data: SiteData, df: pd.DataFrame, ms: dict, memo=inference._call) -> dict:
    """What the site derives over sets of models (ms: _model_statistics): the set-level tables of report.build and the
    fitted scatters (the rank intervals are _ranks'). Each set-level correlation and fitted scatter goes through
    memo(fn, *args), by the content hash of its own inputs."""
    suite, tasks, scored = data.suite, ms["tasks"], ms["scored"]
    rep = report.build(df, data.docs, data.merges, data.similarity, data.neurons, data.movement, suite, tasks,
                       gaps=ms["merge_gaps"], scored=scored, memo=memo, diag=ms["merge_diag"], set_diag=ms["set_diag"],
                       task_gaps=ms["task_gaps"], shares=ms["shares"]) \
        if not df.empty else None
    tables = rep or {"set_correlations": pd.DataFrame(), "lolo": {}, "neuron_layers": pd.DataFrame(), "neuron_movement": pd.DataFrame(),
                     "set_points": pd.DataFrame(), "set_diagnostics": pd.DataFrame(), "power": [], "headline": [], "replication": [],
                     "init_explanation": {}, "diagnostics": pd.DataFrame(), "gap_by_reference": pd.DataFrame(), "covariates": pd.DataFrame()}
    tables = {k: v for k, v in tables.items() if k in _SHOWN_TABLES}
    return {"tables": tables, "fits": _scatter_fits(tables, suite, memo)}


def _ranks(data: SiteData, df: pd.DataFrame, ms: dict, folder: Path | None = None, model_keys: dict[str, str] | None = None,
           later: list | None = None) -> dict:
    """Each model's 95% leaderboard rank interval (ranks_of over _rank_samples' bootstrap scores; each model's
    scores kept in folder by model_keys; later: sitecache._now_or_later)."""
    return ranks_of(*_rank_samples(data, ms["scored"], ms["tasks"], folder, model_keys, later)) if not df.empty else {}


_SETS: dict | None = None  # the set-level job, set before forking (as _PAGES)


_SET_WRITES: list[Callable[[], None]] = []  # the set-level job's cache writes, made after its value is handed back


def _rank_job() -> tuple[dict, bool]:
    """_ranks for build, cached by the inputs key: (value, hit). The first of the set-level jobs (in a forked process
    on large sites: the leaderboard pages wait for it alone, not for the set-level tables after it); it starts their
    list of cache writes (_set_writes)."""
    job = _SETS
    _SET_WRITES.clear()
    return cached(job["folder"], "stats-ranks", job["key"], lambda: _ranks(job["data"], job["df"], job["ms"], job["folder"],
                                                                         job["model_keys"], _SET_WRITES), later=_SET_WRITES)


def _set_job() -> tuple[dict, bool, int, int]:
    """_set_statistics for build (in a forked process on large sites), cached by the inputs key: (value, hit,
    memo hits, memo misses). Its cache files are written by _set_writes, the job after it (the build has the value
    meanwhile)."""
    job = _SETS
    memo = sitecache.Memo(job["folder"] / "memo.pkl", code_digest(*STATS_CODE))
    compute = lambda: _set_statistics(job["data"], job["df"], job["ms"], memo)
    value, hit = cached(job["folder"], "stats-sets", job["key"], compute, later=_SET_WRITES)
    if not hit:
        _SET_WRITES.append(memo.save)
    return value, hit, memo.hits, memo.misses


def _set_writes() -> None:
    """The cache writes of the last _rank_job and _set_job (in the process that ran them), and those the build
    handed to that process (_SETS['writes']: the tidy rows' and per-model statistics', when it is forked)."""
    for write in _SET_WRITES + _SETS.get("writes", []):
        write()
    _SET_WRITES.clear()


def _in_background(fork: bool, *jobs: Callable) -> list[Callable]:
    """Start the jobs, one after another (in one forked process when fork, else now); returns for each a function
    that waits for its value. The build goes on meanwhile (beside the set-level statistics: the leaderboard cells,
    heatmap and model data; beside the results download: the tidy rows and per-model statistics), so both cores
    work."""
    if not fork:
        got = [job() for job in jobs]
        return [lambda g=g: g for g in got]
    import gc
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
    gc.freeze()  # the child's collector then leaves this process's objects alone (no copy of the heap); build unfreezes
    futures = [pool.submit(job) for job in jobs]
    pool.shutdown(wait=False)  # the process ends when its last job has; each waiter collects one

    return [fut.result for fut in futures]


_SHOWN_TABLES = ("set_correlations", "lolo", "neuron_layers", "neuron_movement", "set_points", "set_diagnostics", "power",
                 "headline", "replication", "init_explanation", "diagnostics", "gap_by_reference", "covariates")


def _scatter_fits(tables: dict, suite: dict, memo=inference._call) -> list[tuple]:
    """(arm, column, label, points, fit) of every diagnostic-versus-gap scatter that has a correlation."""
    out = []
    pts_all, sd = tables["set_points"], tables["set_diagnostics"]
    for arm in ("lm", "mt"):
        lin = pts_all[(pts_all.arm == arm) & (pts_all.method == "linear")].set_index("set")["gap"] if not pts_all.empty else pd.Series(dtype=float)
        for col, label in SCATTERS:
            if sd.empty or col not in sd or lin.empty:
                continue
            pts = pd.DataFrame({"x": sd[col], "y": lin}).dropna()
            fit = memo(analysis.fit_with_band, pts["x"].to_numpy(), pts["y"].to_numpy(), suite["seed"])
            if fit["rho"] is not None:
                out.append((arm, col, label, pts, fit))
    return out


_RESULTS_FIELDS = ("name", "kind", "status", "error", "n_rows", "lid_model", "bootstrap", "arm", "method", "constituents")


def _results_pass(results: list[schema.ResultsFile]) -> dict[str, list]:
    """What the build reads of each results file (_RESULTS_FIELDS), one list per field, in the files' order."""
    rows = [(r.model.name, r.model.kind, r.status, r.error, len(r.rows), r.provenance.lid_model, r.provenance.bootstrap,
             r.model.arm, r.model.method, r.model.constituents) for r in results]
    cols = list(zip(*rows)) if rows else [()] * len(_RESULTS_FIELDS)
    return {f: list(c) for f, c in zip(_RESULTS_FIELDS, cols)}


def _inputs_key(data: SiteData, keys: list[str], docs_keys: dict[str, str]) -> str:
    """sha256 of everything the statistics read: the code, every results file, per-document statistics, merges,
    similarity, neuron and movement rows, the suite."""
    return digest(code_digest(*STATS_CODE), keys, docs_keys, data.merges, frame_digest(data.similarity),
                  frame_digest(data.neurons), frame_digest(data.movement), data.suite)


def stats_folder(out: Path) -> Path:
    """Where the statistics of the site built into `out` are cached: beside it (site/_build.cache), so the published
    folder holds only the site and deleting both starts from nothing."""
    return out.with_name(out.name + ".cache")


def build(data: SiteData, out: Path = DEFAULT_OUT, log=print) -> Path:
    """Render the whole site into `out`. Statistics are cached by the content hash of their inputs
    (sitecache.cached), tidy rows by each results file's key (sitecache.blocks); an output whose inputs are
    unchanged since the last build in `out` is left as it is, not rendered again (sitecache.Outputs).

    While it runs, the objects that exist (the inputs: ten thousand results files are millions of objects) are
    frozen out of the cyclic garbage collector, which otherwise walks all of them at every full collection;
    reference counting still frees what the build drops."""
    import gc

    from threadpoolctl import threadpool_limits

    gc.freeze()
    try:
        # on large sites the build is two processes at once (this one and the forked set-level statistics): each
        # gets half the cores' BLAS threads (on two cores one each: OpenBLAS's waiting threads spin, and took from
        # the other process a third of a second of a core; measured)
        with threadpool_limits(max(1, (os.cpu_count() or 1) // 2), user_api="blas"):
            return _build(data, out, log)
    finally:
        gc.unfreeze()


def _build(data: SiteData, out: Path, log) -> Path:
    t0 = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, _t=[t0]):
        now = time.perf_counter()
        phases[name] = round(now - _t[0], 2)
        _t[0] = now

    BUILD_STATS.clear()
    suite = data.suite
    folder = stats_folder(out)
    keys = list(data.result_keys) if data.result_keys else [digest(r.model_dump_json()) for r in data.results]
    docs_keys = {m: digest(d.model_dump_json()) for m, d in data.docs.items()}
    key = _inputs_key(data, keys, docs_keys)
    outs = Outputs(out)
    # what the build reads of every results file, in one pass and before the set-level statistics are forked: beside
    # the forked process, reading an object writes its reference count, and the first write to a page of memory the
    # two processes share copies it (separate passes over ten thousand results files there took 0.4 s; measured)
    seen = _results_pass(data.results)
    names = seen["name"]
    global _DOWNLOAD
    items = list(zip(names, keys))
    _DOWNLOAD = {"outputs": outs, "results": data.results, "items": items, "need": outs.concat_need(RESULTS_DOWNLOAD, items)}
    # the tidy rows of results files not seen before: on a large build the background process makes the later half
    # of them first (then the results download), this one the earlier half
    ok = [i for i, st in enumerate(seen["status"]) if st == "ok"]
    ok_keys, tidy_version = [keys[i] for i in ok], code_digest("analysis.py", "schema.py", "sitecache.py")
    tidy_need = sitecache.missing(folder, "tidy", ok_keys, tidy_version)
    background = (os.cpu_count() or 1) > 1 and max(len(_DOWNLOAD["need"]), len(tidy_need)) >= POOL_MIN
    theirs = tidy_need[len(tidy_need) // 2:] if background and len(tidy_need) >= POOL_MIN else []
    global _TIDY
    _TIDY = {"results": [data.results[ok[j]] for j in theirs]}
    waits = _in_background(background, *([_tidy_part] if theirs else []), _results_download)
    tidy_part, download = waits[0], waits[-1]  # tidy_part is called only when there are `theirs`
    BUILD_STATS.update(tidy_made_beside=len(theirs))
    phase("input hashes")

    def make_tidy(js: list[int]) -> tuple[dict, list[int]]:
        if not theirs or js != tidy_need:
            return analysis.tidy_rows([data.results[ok[j]] for j in js])
        mine, mine_lens = analysis.tidy_rows([data.results[ok[j]] for j in js[:len(js) - len(theirs)]])
        part, part_lens = tidy_part()
        return {c: np.concatenate([v, sitecache._decode(*part[c]) if c in TIDY_STRINGS else part[c]]) for c, v in mine.items()}, \
            mine_lens + part_lens

    # the cache writes of the tidy rows and per-model statistics wait until the set-level statistics have started
    writes: list[Callable[[], None]] = []
    df = analysis.tidy_frame(sitecache.blocks(folder, "tidy", ok_keys, make_tidy, TIDY_STRINGS, version=tidy_version,
                                              later=writes))
    _TIDY = None
    phase("tidy rows")
    # what depends on one model only (its results file, per-document statistics, constituents) and the family (the
    # experts and floor every score and gap is measured against): such outputs are made again only when this changes
    family = sorted((m, k) for m, kind, k in zip(names, seen["kind"], keys) if kind == "family")
    family_key = digest(code_digest(*STATS_CODE), suite, family, [(m, docs_keys.get(m)) for m, _ in family])
    own_key = dict(zip(names, sitecache.digests(family_key, [
        (k, docs_keys.get(m), sitecache.canonical_text(data.merges[m]) if m in data.merges else None)
        for m, k in zip(names, keys)])))
    ok_rows = np.cumsum([0] + [seen["n_rows"][i] for i in ok])  # each ok model's rows of df (tidy_frame's order)
    spans = dict(zip(ok, zip(ok_rows[:-1].tolist(), ok_rows[1:].tolist()))) if not df.empty else {}
    span_of = {names[i]: span for i, span in spans.items()}
    last: dict = {}  # the previous build's inputs key, when its per-model statistics are read

    def model_statistics() -> dict:
        prev, prev_keys, last["key"] = _previous_models(folder)
        return _model_statistics(data, df, prev, prev_keys, own_key, span_of if len(span_of) == len(spans) else None)

    ms, hit = cached(folder, "stats-models", key, model_statistics, later=writes)
    if not hit:
        # compact (json's C encoder; write_json's indent takes its Python one, 0.06 s for ten thousand keys)
        writes.append(lambda: store.atomic_write_text(folder / LAST_MODELS, json.dumps({"key": key, "own": own_key})))
    tasks, vtable, paired, scored = (ms[k] for k in ("tasks", "vtable", "paired", "scored"))
    merge_gaps = ms["merge_gaps"]
    gaps = (merge_gaps if list(merge_gaps.columns) == GAP_COLUMNS else merge_gaps.reindex(columns=GAP_COLUMNS)) \
        if not merge_gaps.empty else pd.DataFrame(columns=GAP_COLUMNS)
    # what the pages need of every model, made before the fork as the pass above
    failed = [{"model": m, "slug": slug(m), "kind": kind, "error": error or "unknown"}
              for m, kind, st, error in zip(names, seen["kind"], seen["status"], seen["error"]) if st == "failed"]
    lid_models = sorted({v for v in seen["lid_model"] if v})
    bootstraps = sorted(set(seen["bootstrap"]))
    members: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        members.setdefault(shard_of(slug(name)), []).append(i)
    at = {m: i for i, m in enumerate(names)}
    facets: dict[tuple, int] = {}  # (arm, method, constituents) -> its code; each model's code
    facet_of = [facets.setdefault((a, me, tuple(c)), len(facets))
                for a, me, c in zip(seen["arm"], seen["method"], seen["constituents"])]
    # a model a line: json.dumps's own form, each string by its C encoder (a json.dumps per line costs three times this)
    models_json = "[\n" + ",\n".join('{"model": %s, "kind": %s, "status": %s, "line": %d, "page": %s, "results_key": %s}' % (
        _js(m), _js(kind), _js(st), j + 1, _js(model_href(slug(m), "../")), _js(k))
        for j, (m, kind, st, k) in enumerate(zip(names, seen["kind"], seen["status"], keys))) + "\n]\n"
    global _SETS
    _SETS = {"data": data, "df": df, "ms": ms, "folder": folder, "key": key,
             "model_keys": dict(zip(names, sitecache.digests("", [(k, docs_keys.get(m)) for m, k in zip(names, keys)])))}
    sets_forked = len(data.results) >= BACKGROUND_MIN and not (folder / f"stats-sets-{key}.pkl").is_file()
    # a forked set-level job also makes this build's cache writes, once its value is handed back (beside the pages
    # made after the wait for it: the per-model statistics alone are 45 MB at ten thousand, 0.14 s to write)
    _SETS["writes"] = writes if sets_forked else []
    rank_stats, set_stats, set_writes = _in_background(sets_forked, _rank_job, _set_job, _set_writes)
    # the leaderboard, which the set-level statistics do not read: made (or read back) after they have started
    board = _board(folder, key, df, tasks, scored, last.get("key"), ms["recomputed"], span_of)
    on_board = {facet_of[at[m]] for m in board.index}
    shown = [f for f, code in facets.items() if code in on_board]  # the facets of the models on the leaderboard
    filters = {"arms": sorted({f[0] for f in shown if f[0]}), "methods": sorted({f[1] for f in shown if f[1]}),
               "constituents": sorted({c.split("/")[-1] for f in shown for c in f[2]})}
    board_models = list(board.index)
    for write in writes if not sets_forked else []:
        write()
    phase("statistics (models)" if not hit else "statistics (models, cached)")
    lm_tasks = [f"lm:{l}" for l in suite["languages"]]
    mt_tasks = [f"mt:{suite['pivot']}-{x}" for x in suite["languages"] if x != suite["pivot"]]

    # what depends on one model only (its results file, per-document statistics, constituents) and the family (the
    # experts and floor every score and gap is measured against): such outputs are made again only when this changes
    page_code = code_digest(*PAGE_CODE)  # the templates, static files and the code that computes what pages show

    # leaderboard rows: each model's cells as HTML, kept by own_key (sitecache.strings); ranks are added per build
    task_cols = {t: _task_column(tasks[t]) for t in lm_tasks + mt_tasks}
    memo: dict = {"cell": {}, "signal": {}, "board": {}, "rows": {}}

    def prepare(models: list[str]) -> None:
        """Look up the cells of these models' rows (only theirs, by their row ranges: a rebuild after one submission
        needs one row, and a scan of every row per lookup would cost more than the row)."""
        new = [m for m in dict.fromkeys(models) if m not in memo["board"]]
        if not new:
            return
        if "scored_of" not in memo:
            memo["scored_of"] = scored.groupby("model", sort=False).indices if not scored.empty else {}
        at = [memo["scored_of"][m] for m in new if m in memo["scored_of"]]
        s_ = scored.iloc[np.concatenate(at)] if at else scored.iloc[:0]
        pairs = list(zip(s_["model"].tolist(), s_["task"].tolist()))
        memo["cell"].update(zip(pairs, s_["value"].tolist()))
        memo["signal"].update(zip(pairs, s_["signal"].tolist()))
        at = [np.arange(*span_of[m]) for m in new if m in span_of]
        if at:
            rows = np.concatenate(at)
            metric = df["metric"].to_numpy()[rows]
            rates = df.iloc[rows[(metric == "empty_rate") | (metric == "off_target_rate")]]
            memo["cell"].update(zip(zip(rates["model"].tolist(), rates["task"].tolist(), rates["metric"].tolist()), rates["value"].tolist()))
        memo["board"].update(board.loc[new, ["babel_score", "n_live", "mean_bpb", "mean_chrf"]].to_dict("index"))

    def board_row(model: str) -> dict:
        """A model's leaderboard row without its rank (plain dicts: per-cell pandas lookups are too slow at scale);
        made once per build (the row's cells and its model's data both use it)."""
        if model not in memo["rows"]:
            memo["rows"][model] = _board_row(model)
        return memo["rows"][model]

    def _board_row(model: str) -> dict:
        prepare([model])
        cell, signal_of, b, i = memo["cell"], memo["signal"], memo["board"][model], at[model]
        nan_none = lambda v: None if v is None or v != v else v
        cells = {t: _score_cell(nan_none(cell.get((model, t))), c, signal_of.get((model, t))) for t, c in task_cols.items()}
        return {"model": model, "slug": slug(model), "kind": seen["kind"][i], "arm": seen["arm"][i] or "",
                "method": seen["method"][i] or "", "constituents": [c.split("/")[-1] for c in seen["constituents"][i]],
                "score": b["babel_score"], "n_live": b["n_live"], "bpb": b["mean_bpb"], "chrf": b["mean_chrf"],
                "lm": [cells[t] for t in lm_tasks], "mt": [cells[t] for t in mt_tasks],
                "ns_tasks": [t for t in mt_tasks if cells[t]["ns"]], "nc_tasks": [t for t in mt_tasks if cells[t]["nc"]],
                "empty": [nan_none(cell.get((model, t, "empty_rate"))) for t in mt_tasks],
                "off": [nan_none(cell.get((model, t, "off_target_rate"))) for t in mt_tasks]}

    def board_parts(idx: list[int]) -> list[list[str]]:
        prepare([board_models[j] for j in idx])
        return [_board_parts(board_row(board_models[j])) for j in idx]

    parts = sitecache.strings(folder, "rows", [own_key[m] for m in board_models], board_parts, version=page_code)
    phase("leaderboard rows")
    # merge-gap heatmap
    sig = {(r.merge, r.task) for r in paired.itertuples() if r.ci_low > 0 or r.ci_high < 0} if not paired.empty else set()
    heat = {"lm": [], "mt": []}
    shown_merges = sorted(data.merges)
    if len(shown_merges) > HEAT_ROWS and not gaps.empty:  # the merges with the largest mean loss; the CSV has all
        mean_gap = _mean_expert_gap(gaps)
        shown_merges = sorted(sorted(shown_merges, key=lambda m: mean_gap.get(m, 0.0))[:HEAT_ROWS])
    g = gaps[gaps["merge"].isin(shown_merges)] if not gaps.empty else gaps
    gkey = list(zip(g["merge"].tolist(), g["reference"].tolist(), g["task"].tolist())) if not g.empty else []
    rel = dict(zip(gkey, g["rel_gap_pct"].tolist())) if gkey else {}
    absgap = dict(zip(gkey, g["gap"].tolist())) if gkey else {}
    for arm, arm_tasks in (("lm", lm_tasks), ("mt", mt_tasks)):
        digits, ref2 = (3, "mixed") if arm == "lm" else (1, "mt-all")
        for merge in shown_merges:
            if not any(absgap.get((merge, "expert", t)) is not None for t in arm_tasks):
                continue  # no constituent expert in this arm: the merge is not about it
            cells = []
            for t in arm_tasks:
                ve, vm, pe = absgap.get((merge, "expert", t)), absgap.get((merge, ref2, t)), rel.get((merge, "expert", t))
                cells.append({"expert": _fmt(ve, digits) + ("*" if (merge, t) in sig else ""), "mixed": _fmt(vm, digits),
                              "v": pe if pe is not None and not pd.isna(pe) else rel.get((merge, ref2, t))})
            heat[arm].append({"merge": merge, "slug": slug(merge), "cells": cells})
    heat_rows = heat["lm"] + heat["mt"]
    heat_note = (f"The {HEAT_ROWS} merges with the largest mean loss against their experts, of {len(data.merges)}; "
                 "data/merge_gaps.csv has every merge.") if len(data.merges) > HEAT_ROWS else ""
    phase("heatmap")
    # methods
    signatures = {}
    if not df.empty:
        for r in df[["metric", "signature"]].dropna(subset=["signature"]).drop_duplicates().itertuples():
            signatures.setdefault(r.metric, set()).add(r.signature)
    dead_cols = [c for c in (task_cols[t] for t in lm_tasks + mt_tasks) if not c["live"]]
    ctx = dict(suite=suite, built=now_utc(), git=git_hash(), lm_tasks=lm_tasks, mt_tasks=mt_tasks,
               n_models=len(data.results), n_merges=len(data.merges), failed=failed,
               cols=[task_cols[t] for t in lm_tasks + mt_tasks], no_signal=NO_SIGNAL, no_control=NO_CONTROL,
               live=[c for c in (task_cols[t] for t in lm_tasks + mt_tasks) if c["live"]], dead=dead_cols)

    env = _env(folder / "templates")
    # every model's page is drawn in the browser by model.html from its data file: MODEL_SHARDS files of models by
    # the hash of their slug (ten thousand pages would be ten thousand files of HTML, 40 kB each). A file is made
    # again only when the key of one of its models changed: the model view's code and shared context, the family
    # (the experts and floor every score and gap is measured against), and the model's own inputs. Made in a process
    # per core when many (forked: the workers read what is built here).
    global _PAGES
    model_ctx = {k: ctx[k] for k in ("suite", "built", "git", "dead", "no_signal", "no_control", "lm_tasks", "mt_tasks")}
    sim_keys = _row_keys(data.similarity, "merge")
    model_key = digest(page_code, family_key, {k: v for k, v in model_ctx.items() if k not in ("built", "git")})
    # each model's own inputs (own_key: its results, per-document statistics and constituents; its manifest; its
    # similarity rows), then each shard's key over its models'
    page_own = sitecache.digests(model_key, [(own_key[m], store.canonical_json(data.manifests[m]) if data.manifests.get(m) else None,
                                              sim_keys.get(m)) for m in names])
    todo = [s for s in sorted(members) if not outs.reuse(shard_path(s), digest(model_key, [page_own[i] for i in members[s]]))]
    _PAGES = {"data": data, "outputs": outs, "members": members, "order": {t: j for j, t in enumerate(lm_tasks + mt_tasks)}}
    made_before, reused_before = outs.made, outs.reused
    in_board = set(board_models)
    made_names = [names[i] for s in todo for i in members[s]]
    prepare([m for m in made_names if m in in_board])  # at once: one lookup per model would scan the table each time
    _PAGES["board_of"] = {m: board_row(m) for m in made_names if m in in_board}
    # the rows of the models to write (all of them on a first build, one shard's after one new submission)
    few = len(made_names) < len(data.results) // 2
    rows_for = lambda frame: frame[frame["merge"].isin(made_names).to_numpy()] if few and not frame.empty else frame
    for name, frame in (("gap", gaps), ("paired", paired), ("sim", data.similarity)):
        frame = rows_for(frame) if frame is not None else pd.DataFrame()
        _PAGES[name] = frame
        _PAGES[f"{name}_rows_of"] = frame.groupby("merge", sort=False).indices if not frame.empty else {}
    _PAGES["df"] = df
    _PAGES["spans"] = spans
    # what a page shows beyond its own rows; the build time and git hash are left out, so a page whose content
    # is unchanged keeps the time it was built
    page_key = digest(page_code, {k: v for k, v in ctx.items() if k not in ("built", "git")})
    site_key = digest(page_key, key, [r.model_dump(mode="json") for r in data.method_records],
                      data.method_specs)
    data_key = lambda name: digest(site_key, name)
    # the downloads that need no set-level statistics, written beside the model data (by a worker on large sites)
    _PAGES["tables"] = {"board": board, "board_key": data_key("leaderboard.csv"),
                        "grouped": [("merge_gaps", gaps, own_key), ("paired_vs_expert", paired, own_key),
                                    ("similarity", data.similarity, sim_keys)]}
    # a core per worker, less the one the set-level statistics hold while they run in the background: on two cores
    # the model data are written here (forked workers beside the forked statistics cost more in copied pages than
    # they save)
    workers = min(os.cpu_count() or 1, 8) - (1 if sets_forked else 0) if len(made_names) >= POOL_MIN else 1
    chunks = [todo[i::4 * workers] for i in range(4 * workers)] if workers > 1 else [todo]
    table_files = None
    if workers > 1:
        import gc
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # the workers read this process's objects; frozen, the collector in a worker does not write to every one of
        # them (which would copy the whole heap, page by page, into each worker); build unfreezes them at its end.
        # The downloads go first, the model data after in small chunks, so both workers end about together.
        gc.freeze()
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            tables = pool.submit(_write_tables)
            for made in pool.map(_write_model_shards, chunks):
                outs.merge(*made)
            table_files = tables.result()
    else:
        outs.merge(*_write_model_shards(chunks[0]))
    BUILD_STATS.update(model_files_made=outs.made - made_before, model_files_reused=outs.reused - reused_before,
                       models_written=len(made_names), model_workers=workers)
    outs.merge(*(table_files or _write_tables()))
    _PAGES = None
    outs.text(MODEL_VIEW, digest(model_key, "view"), lambda: env.get_template("model.html.j2").render(**model_ctx, shards=MODEL_SHARDS))
    outs.merge(*download())
    _DOWNLOAD = None

    phase("model data")
    outs.text("methods.html", site_key, lambda: env.get_template("methods.html.j2").render(
        **ctx, signatures={k: sorted(v) for k, v in signatures.items()}, validity=validity_view(vtable),
        floor=validity.rule(suite).floor,
        lid_models=lid_models, bootstrap=bootstraps,
        suite_yaml=json.dumps({k: v for k, v in suite.items() if k != "path"}, indent=1, ensure_ascii=False)))
    _method_leaderboard(env, outs, digest(site_key, "methods"), ctx, data, ms["set_diag"], scored)
    phase("methods pages")
    # the rank intervals (the set-level job's first part, in its process on large sites), then the leaderboard pages
    # and every model's rank, while the rest of that job runs
    ranks, ranks_hit = rank_stats()
    board_rows = [{"model": m, "slug": slug(m), "rank": i, "rank_ci": ranks.get(m, (i, i)), "parts": p}
                  for i, (m, p) in enumerate(zip(board_models, parts), 1)]
    pages = max(1, math.ceil(len(board_models) / PAGE_ROWS))
    page_name = lambda j: "index.html" if j == 1 else f"leaderboard-{j}.html"
    index_tpl = env.get_template("index.html.j2")
    for k in range(pages):
        rows_k = board_rows[k * PAGE_ROWS:(k + 1) * PAGE_ROWS]
        outs.text(page_name(k + 1), site_key, lambda rows_k=rows_k, k=k: index_tpl.render(
            **ctx, body=_board_bodies(rows_k), page=k + 1, pages=pages, filters=filters, page_name=page_name))
    # every model's rank, for its page (ranks move with every submission; the pages do not)
    outs.text("data/ranks.js", digest(site_key, "ranks.js"), lambda: "window.babelRanks = " + json.dumps(
        {r["slug"]: [r["rank"], *r["rank_ci"], -(-r["rank"] // PAGE_ROWS)] for r in board_rows}, separators=(",", ":"))
        + ";\nwindow.babelModels = " + str(len(board_rows)) + ";\n")
    outs.text("data/rank_intervals.json", data_key("ranks"), lambda: json.dumps({m: list(v) for m, v in ranks.items()}))
    # downloads: everything shown; every model's full results file is one line of data/results.jsonl.gz
    for static in ("style.css", "site.js", "model.js"):
        outs.file(static, code_digest(f"../site/static/{static}"), lambda p, static=static: shutil.copy(STATIC / static, p))
    csv = lambda frame, **kw: lambda p: frame.to_csv(p, **kw)
    outs.text("data/models.json", data_key("models.json"), lambda: models_json)
    outs.file("data/neurons.csv", data_key("neurons"), csv(data.neurons, index=False))
    outs.file("data/validity.csv", data_key("validity"), csv(pd.DataFrame(vtable), index=False))
    phase("ranks and leaderboard pages")
    # the set-level statistics (started before the leaderboard cells, in a forked process on large sites)
    sets, set_hit, memo_hits, memo_misses = set_stats()
    _SETS = None  # nothing holds the inputs after the build
    tables = sets["tables"]
    hit = hit and set_hit and ranks_hit
    BUILD_STATS.update(stats_hit=hit, stats_key=key, memo_hits=memo_hits, memo_misses=memo_misses)
    phase("statistics (sets, waited for)")
    # analysis: set-level inference, arms apart (report.build, in _statistics)
    scatters = []
    pts_all = tables["set_points"]
    for arm, col, label, pts, fit in sets["fits"]:
        verdict = inference.detected(fit["rho_lo"], fit["rho_hi"], fit["p_value"])
        desc = (f"{ARM_NAME[arm]}: {len(pts)} constituent sets, each its linear merge; Spearman rho {_fmt(fit['rho'])} "
                f"(95% bootstrap interval over sets {_fmt(fit['rho_lo'])} to {_fmt(fit['rho_hi'])}: {verdict}); the line is the "
                f"least-squares fit and the band its 95% bootstrap interval.")
        svg = plots.scatter([{"x": float(x), "y": float(y), "label": n} for n, x, y in pts.itertuples()],
                            f"{label} versus gap ({ARM_NAME[arm]})", label, f"gap to expert ({ARM_UNIT[arm]})", fit, desc)
        scatters.append({"name": col, "arm": arm, "label": f"{ARM_NAME[arm]}: {label}", "fit": fit, "svg": Markup(svg),
                         "desc": desc, "verdict": verdict})
    curves, curve_desc = {}, ""
    if not data.similarity.empty:
        s_ = data.similarity[(data.similarity.relation == "constituents") & (data.similarity.metric == "cka_linear")]
        by = s_.groupby(["merge", "layer"])["value"].mean().unstack("layer").sort_index(axis=1)
        if len(by) <= 10:
            curves = {m: [v for v in row if v == v] for m, row in zip(by.index, by.to_numpy())}
            curve_desc = f"Mean linear CKA between each merge's constituents at each layer, {len(curves)} merges."
        else:  # too many merges for one line each: the spread across merges
            q = np.nanpercentile(by.to_numpy(), [10, 50, 90], axis=0)
            curves = {"90th percentile": q[2].tolist(), "median": q[1].tolist(), "10th percentile": q[0].tolist()}
            curve_desc = f"Median and 10th/90th percentiles over {len(by)} merges of the mean constituent CKA at each layer."
    curve_svg = Markup(plots.lines(curves, "Layer-wise CKA between constituents", "layer (0 = embeddings)", "linear CKA",
                                   curve_desc)) if curves else None

    corr_rows, lolo, neuron_svgs, movement = _diagnostics_view(tables)
    replication = [{**r, "estimate_ci": (f"{_fmt(r['estimate'], 1)} [{_fmt(r['ci_low'], 1)}, {_fmt(r['ci_high'], 1)}] vs {r['null']:g}"
                                         if r["null"] else _ci(r["estimate"], r["ci_low"], r["ci_high"], 3))}
                   for r in tables["replication"]]
    phase("analysis")
    outs.text("analysis.html", site_key, lambda: env.get_template("analysis.html.j2").render(
        **ctx, heat=heat, heat_rows=heat_rows, heat_note=heat_note, scatters=scatters, curve_svg=curve_svg,
        corr_rows=corr_rows, lolo=lolo, neuron_svgs=neuron_svgs, movement=movement, replication=replication,
        headline=tables["headline"], power=tables["power"], explain=tables["init_explanation"], arm_name=ARM_NAME,
        arm_unit=ARM_UNIT, n_sets=int(pts_all["set"].nunique()) if not pts_all.empty else 0))
    phase("analysis page")
    outs.text("data/correlations.json", data_key("correlations"), lambda: json.dumps(
        [{"diagnostic": s["name"], "arm": s["arm"], "points": "constituent sets (linear merge)",
          **{k: v for k, v in s["fit"].items() if k != "band"}} for s in scatters], indent=1))
    for name in ("set_correlations", "set_points", "neuron_layers", "neuron_movement"):
        outs.file(f"data/{name}.csv", data_key(name), csv(tables[name], index=False))
    outs.file("data/set_diagnostics.csv", data_key("set_diagnostics"), csv(tables["set_diagnostics"]))
    outs.text("data/power.json", data_key("power"), lambda: json.dumps(tables["power"], indent=1))
    if not tables["diagnostics"].empty:
        diagnostics = tables["diagnostics"].join(tables["gap_by_reference"]).join(tables["covariates"])
        outs.file("data/merge_diagnostics.csv", data_key("merge_diagnostics"),  # a row per merge: written as the
                  lambda p: p.write_bytes(sitecache.csv_bytes(diagnostics.reset_index())))  # other per-merge downloads
    outs.file("data/replication.csv", data_key("replication"), csv(pd.DataFrame(replication), index=False))
    outs.text("data/lolo.json", data_key("lolo"), lambda: json.dumps(tables["lolo"], indent=1, default=float))
    set_writes()  # the set-level job's cache files, written in its process while these pages were made
    outs.save()
    BUILD_STATS.update(files_made=outs.made, files_reused=outs.reused)
    phase("downloads")
    log(f"[site] {len(data.results)} models, {pages} leaderboard page(s) in {time.perf_counter() - t0:.1f}s -> {out}; "
        f"statistics {'reused' if hit else 'computed'}, {outs.made} files made, {outs.reused} unchanged")
    log("[site] phases (s): " + ", ".join(f"{k} {v}" for k, v in phases.items()))
    BUILD_STATS.update(phases=phases)
    return out / "index.html"
