"""Which tasks are live on this preset (issue 11, point 5): a task counts only where its expert measurably does
the task, judged on the stored family results by the rule in the suite's `validity:` block. lm:<l> is live when
mono-<l>'s bits per byte are below the untrained floor init-s0's (95% paired bootstrap over documents of
floor - expert above zero); mt:<pivot>-<x> takes the first metric of the suite's ordered list whose expert
carries signal against its shuffled-source control (the 95% interval of score - control excludes zero, above)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scoring

DEAD_MT = "below its shuffled-source control"
# Per-document teacher-forced statistics of an mt task (TaskDocs fields written by the evaluation engine): natural
# log-likelihood of the reference given the real source, given the shuffled source, and the reference's UTF-8 bytes.
XMI_FIELDS = ("ll_given", "ll_shuffled", "tgt_bytes")


@dataclass(frozen=True)
class Candidate:
    """One translation metric the suite may make primary: `metric` is what the aggregate normalizes, `score` and
    `control` the rows shown side by side, `signal` the paired score-minus-control row whose interval decides."""

    metric: str
    score: str
    control: str
    signal: str


@dataclass(frozen=True)
class Rule:
    """The suite's validity rule (suites/<id>.yaml: validity)."""

    floor: str                          # the untrained reference model
    experts: dict[str, str]             # task kind -> expert name pattern, {lang} and {pivot} filled in
    lm_metric: str
    mt: tuple[Candidate, ...]           # in order of preference


@dataclass(frozen=True)
class TaskValidity:
    """Whether one task counts, and on which metric; floor and expert values are the aggregate's scale."""

    task: str
    kind: str
    language: str
    expert: str
    live: bool
    metric: str                         # the metric shown and, when live, aggregated
    higher_is_better: bool
    signal: str | None                  # mt: the row that says whether a model's score carries signal
    floor_value: float | None
    expert_value: float | None
    reason: str                         # why it is not live ('' when live)


def _bad(suite: dict, field: str, what: str) -> ValueError:
    return ValueError(f"suites/{suite.get('id', '?')}.yaml: {field}: {what}; see the validity block of "
                      "suites/babel-mini-v2.yaml for the expected form")


def rule(suite: dict) -> Rule:
    """Parse the suite's `validity:` block; bad input raises one line naming the field."""
    v = suite.get("validity")
    if not isinstance(v, dict):
        raise _bad(suite, "validity", "missing or not a mapping")
    experts = v.get("experts")
    if not isinstance(experts, dict) or not {"lm", "mt"} <= set(experts):
        raise _bad(suite, "validity.experts", "give an expert name pattern for lm and for mt")
    mt = v.get("mt", {}).get("metrics") if isinstance(v.get("mt"), dict) else None
    if not isinstance(mt, list) or not mt:
        raise _bad(suite, "validity.mt.metrics", "give a non-empty ordered list of {metric, score, control, signal}")
    cands = []
    for i, c in enumerate(mt):
        if not isinstance(c, dict) or set(c) != {"metric", "score", "control", "signal"}:
            raise _bad(suite, f"validity.mt.metrics[{i}]", "needs exactly the keys metric, score, control, signal")
        cands.append(Candidate(**{k: str(x) for k, x in c.items()}))
    lm = v.get("lm", {}).get("metric") if isinstance(v.get("lm"), dict) else None
    if not isinstance(v.get("floor"), str) or not isinstance(lm, str):
        raise _bad(suite, "validity.floor / validity.lm.metric", "name the floor model and the lm metric")
    return Rule(floor=v["floor"], experts={k: str(x) for k, x in experts.items()}, lm_metric=lm, mt=tuple(cands))


def task_names(suite: dict) -> list[tuple[str, str, str]]:
    """(task, kind, language) of every suite task: lm:<l> for each language, then mt:<pivot>-<x>."""
    langs, pivot = suite["languages"], suite["pivot"]
    return [(f"lm:{l}", "lm", l) for l in langs] + [(f"mt:{pivot}-{x}", "mt", x) for x in langs if x != pivot]


def carries_signal(row: dict | None) -> bool:
    """A paired score-minus-control row carries signal when its 95% interval lies above zero."""
    return row is not None and row.get("ci_low") is not None and row["ci_low"] > 0


def lookup(df) -> dict[tuple[str, str, str], dict]:
    """(model, task, metric) -> the row, from analysis.tidy's frame."""
    if df.empty:
        return {}
    cols = ["model", "task", "metric", "value", "ci_low", "ci_high", "stderr", "n", "higher_is_better"]
    return {(r["model"], r["task"], r["metric"]): r for r in df[cols].to_dict("records")}


def _paired_bpb_gain(docs: dict, floor: str, expert: str, task: str, seed: int) -> tuple[float, float] | None:
    """95% paired-bootstrap interval of floor - expert bits per byte on the same documents, if both have them."""
    f, e = docs.get(floor), docs.get(expert)
    if f is None or e is None or task not in f.tasks or task not in e.tasks or f.tasks[task].ids != e.tasks[task].ids:
        return None
    ft, et = f.tasks[task], e.tasks[task]
    if ft.ll is None or et.ll is None:
        return None
    idx = scoring.bootstrap_indices(len(ft.ids), seed)
    boot = lambda d: scoring.bits_per_byte_boot(np.asarray(d.ll), np.asarray(d.bytes, dtype=np.float64), idx)
    lo, hi, _ = scoring.interval(boot(ft) - boot(et))
    return lo, hi


def _lm(task, lang, r: Rule, rows, docs, suite) -> tuple[TaskValidity, list[dict]]:
    expert = r.experts["lm"].format(lang=lang, pivot=suite["pivot"])
    e, f = rows.get((expert, task, r.lm_metric)), rows.get((r.floor, task, r.lm_metric))
    base = dict(task=task, kind="lm", language=lang, expert=expert, metric=r.lm_metric, higher_is_better=False,
                signal=None, floor_value=f and f["value"], expert_value=e and e["value"])
    table = {"task": task, "metric": r.lm_metric, "expert": expert, "expert_value": base["expert_value"],
             "expert_ci_low": e and e.get("ci_low"), "expert_ci_high": e and e.get("ci_high"), "control": r.floor,
             "control_value": base["floor_value"], "difference": None, "diff_ci_low": None, "diff_ci_high": None,
             "interval": "", "floor_value": base["floor_value"], "floor_difference": None, "floor_ci_low": None,
             "floor_ci_high": None}
    if e is None or f is None:
        reason = f"no stored {r.lm_metric} for {expert if e is None else r.floor}"
        return TaskValidity(live=False, reason=reason, **base), [{**table, "live": False, "task_live": False, "reason": reason}]
    diff = f["value"] - e["value"]
    ci = _paired_bpb_gain(docs, r.floor, expert, task, suite["seed"])
    how = "paired bootstrap over documents"
    if ci is None and e.get("ci_high") is not None:  # no per-document data: the expert's interval against the floor's value
        ci, how = (f["value"] - e["ci_high"], f["value"] - e["ci_low"]), f"the expert's interval against {r.floor}'s value"
    live = ci is not None and ci[0] > 0
    reason = "" if live else (f"no interval stored for {expert}" if ci is None else
                              f"expert not below {r.floor} in {r.lm_metric.replace('_', ' ')}")
    table.update(difference=diff, diff_ci_low=ci and ci[0], diff_ci_high=ci and ci[1], interval=how)
    return TaskValidity(live=live, reason=reason, **base), [{**table, "live": live, "task_live": live, "reason": reason}]


def _mt(task, lang, r: Rule, rows, suite) -> tuple[TaskValidity, list[dict]]:
    expert = r.experts["mt"].format(lang=lang, pivot=suite["pivot"])
    chosen, table, missing = None, [], 0
    for c in r.mt:
        g = lambda m, metric: rows.get((m, task, metric))
        e, s, ctl = g(expert, c.metric), g(expert, c.signal), g(expert, c.control)
        f, fs = g(r.floor, c.metric), g(r.floor, c.signal)
        sc = g(expert, c.score)
        missing += s is None
        above = e is not None and f is not None and (e["value"] - f["value"]) * (1 if e["higher_is_better"] else -1) > 0
        ok = chosen is None and carries_signal(s) and above
        reason = ("" if ok else f"{chosen.metric} comes first and is live" if chosen is not None else
                  f"no stored {c.signal} for {expert}" if s is None else DEAD_MT if not carries_signal(s) else
                  f"no stored {c.metric} for {r.floor}" if f is None else f"expert not above {r.floor} in {c.metric}")
        if ok:
            chosen = TaskValidity(task=task, kind="mt", language=lang, expert=expert, live=True, metric=c.metric,
                                  higher_is_better=bool(e["higher_is_better"]), signal=c.signal,
                                  floor_value=f["value"], expert_value=e["value"], reason="")
        fsc = g(r.floor, c.score)
        v = lambda x, k="value": None if x is None else x.get(k)
        table.append({"task": task, "metric": c.metric, "expert": expert, "expert_value": v(sc),
                      "expert_ci_low": v(sc, "ci_low"), "expert_ci_high": v(sc, "ci_high"), "control": c.control,
                      "control_value": v(ctl), "difference": v(s), "diff_ci_low": v(s, "ci_low"),
                      "diff_ci_high": v(s, "ci_high"), "interval": f"{c.signal} (paired bootstrap over documents)",
                      "floor_value": v(fsc), "floor_difference": v(fs), "floor_ci_low": v(fs, "ci_low"),
                      "floor_ci_high": v(fs, "ci_high"), "live": ok, "reason": reason, "score": c.score,
                      "signal": carries_signal(s)})
    for t in table:
        t["task_live"] = chosen is not None
    if chosen is not None:
        return chosen, table
    first = r.mt[0]
    e, f = rows.get((expert, task, first.metric)), rows.get((r.floor, task, first.metric))
    reasons = [t["reason"] for t in table]
    reason = DEAD_MT if DEAD_MT in reasons else (reasons[0] if missing < len(r.mt) else
                                                   f"no control rows stored for {expert} (re-evaluate it)")
    return TaskValidity(task=task, kind="mt", language=lang, expert=expert, live=False, metric=first.metric,
                        higher_is_better=True if e is None else bool(e["higher_is_better"]), signal=first.signal,
                        floor_value=f and f["value"], expert_value=e and e["value"], reason=reason), table


def assess(df, suite: dict, docs: dict | None = None) -> tuple[dict[str, TaskValidity], list[dict]]:
    """Every suite task's validity, and the validity table (one row per task and candidate metric: the expert's
    score and interval, its control, the difference with its interval, the floor's score and difference).
    df: analysis.tidy of the stored results; docs: model -> DocsFile (for paired comparisons), optional."""
    r = rule(suite)
    names = {r.floor} | {r.experts[k].format(lang=l, pivot=suite["pivot"]) for _, k, l in task_names(suite)}
    rows = lookup(df[df["model"].isin(names)] if not df.empty else df)
    tasks, table = {}, []
    for task, kind, lang in task_names(suite):
        tv, t = _lm(task, lang, r, rows, docs or {}, suite) if kind == "lm" else _mt(task, lang, r, rows, suite)
        tasks[task] = tv
        table += t
    return tasks, table


def xmi_boot(d, idx: np.ndarray) -> np.ndarray | None:
    """XMI (bits per byte given the shuffled source minus given the real one) of each resample from per-document
    teacher-forced statistics, or None where the docs file does not store them. idx: (n_boot, n_docs)."""
    got = [getattr(d, f, None) for f in XMI_FIELDS]
    if any(x is None for x in got):
        return None
    given, shuffled, nb = (np.asarray(x, dtype=np.float64) for x in got)
    return (given[idx].sum(1) - shuffled[idx].sum(1)) / np.log(2) / nb[idx].sum(1)
