"""The reference grid: mergekit recipes over babel-mini members, written as submissions by this script
(`babelmerge grid`), never by hand."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import store
from .corpus import LANGUAGES
from .family.names import FAMILY, TARGETS
from .languages import GENUS

REF = f"family:{FAMILY}/"


def _m(name: str) -> str:
    return REF + name


def _recipe(method: str, models: list[str], base: str | None = None, params: dict | None = None,
            per_model: dict | None = None) -> dict:
    r = {"merge_method": method, "dtype": "float32",
         "models": [{"model": _m(m), **({"parameters": dict(per_model)} if per_model else {})} for m in models]}
    if base:
        r["base_model"] = _m(base)
    if params:
        r["parameters"] = params
    return r


def reference_grid() -> list[dict]:
    """(id, title, method, arm, constituents, base, recipe) for every reference merge: both arms of DESIGN
    section 4, every mergekit method that applies, over same-init, independent-init, related, divergent and
    mixed sets."""
    mono = [f"mono-{l}" for l in LANGUAGES]
    cpt = [f"cpt-{l}" for l in LANGUAGES]
    mt = lambda *xs: [f"mt-en-{x}" for x in xs]
    mt_all = mt(*TARGETS)
    sets = {"mt-all": mt_all, "mt-related": mt("fr", "es", "it"), "mt-divergent": mt("ru", "ar"),
            "mt-de-ru": mt("de", "ru"), "mt-fr-ar": mt("fr", "ar")}
    g = []

    def add(id_, title, method, arm, models, base=None, params=None, per_model=None):
        g.append({"id": id_, "title": title, "method": method, "arm": arm, "constituents": models, "base": base,
                  "recipe": _recipe(method, models, base, params, per_model)})

    w1 = {"weight": 1.0}
    # pre-training arm: monolingual models, same init (init-s0) and independent inits (init-s1)
    add("ref-linear-mono-all", "Linear average of all monolingual models (same init)", "linear", "pretrain", mono, per_model=w1)
    for a, b in (("en", "ru"), ("en", "de"), ("en", "ar"), ("fr", "es")):
        add(f"ref-linear-mono-{a}-{b}", f"Linear average of mono-{a} and mono-{b} (same init)", "linear", "pretrain",
            [f"mono-{a}", f"mono-{b}"], per_model=w1)
    for a, b in (("mono-en", "mono-ru-s1"), ("mono-en-s1", "mono-ru"), ("mono-en", "mono-en-s1")):
        add(f"ref-linear-{a}-{b.removeprefix('mono-')}", f"Linear average of {a} and {b} (independent inits)", "linear",
            "pretrain", [a, b], per_model=w1)
    add("ref-slerp-mono-en-fr", "SLERP between mono-en and mono-fr, t = 0.5", "slerp", "pretrain", ["mono-en", "mono-fr"],
        base="mono-en", params={"t": 0.5})
    add("ref-nuslerp-mono-en-ru", "NuSLERP between mono-en and mono-ru", "nuslerp", "pretrain", ["mono-en", "mono-ru"], per_model=w1)
    add("ref-multislerp-mono-all", "Multi-SLERP over all monolingual models", "multislerp", "pretrain", mono, per_model=w1)
    add("ref-karcher-mono-all", "Karcher mean of all monolingual models", "karcher", "pretrain", mono)
    add("ref-task-arithmetic-mono-all-l0.5", "Task arithmetic over monolingual models from init-s0, lambda 0.5",
        "task_arithmetic", "pretrain", mono, base="init-s0", per_model={"weight": 0.5})
    add("ref-ties-mono-all-d0.5", "TIES over monolingual models from init-s0, density 0.5", "ties", "pretrain", mono,
        base="init-s0", per_model={"weight": 1.0, "density": 0.5})
    add("ref-model-stock-mono-all", "Model Stock over monolingual models from init-s0", "model_stock", "pretrain", mono,
        base="init-s0")
    # continued pre-training arm: a shared multilingual base
    add("ref-linear-cpt-all", "Linear average of all continued-pre-training models", "linear", "cpt", cpt, per_model=w1)
    for lam in (0.3, 0.5, 0.7, 1.0):
        add(f"ref-task-arithmetic-cpt-all-l{lam}", f"Task arithmetic over cpt-*, lambda {lam}", "task_arithmetic", "cpt",
            cpt, base="mixed", per_model={"weight": lam})
    add("ref-ties-cpt-all-d0.5", "TIES over cpt-*, density 0.5", "ties", "cpt", cpt, base="mixed",
        per_model={"weight": 1.0, "density": 0.5})
    add("ref-dare-ties-cpt-all-d0.5", "DARE-TIES over cpt-*, density 0.5", "dare_ties", "cpt", cpt, base="mixed",
        per_model={"weight": 1.0, "density": 0.5})
    add("ref-model-stock-cpt-all", "Model Stock over cpt-*", "model_stock", "cpt", cpt, base="mixed")
    add("ref-karcher-cpt-all", "Karcher mean of cpt-*", "karcher", "cpt", cpt)
    # fine-tuning arm: en->x translation experts over mixed
    add("ref-linear-mt-all", "Linear average of all en->x translation experts", "linear", "mt", mt_all, per_model=w1)
    for lam in (0.3, 0.5, 0.7, 1.0):
        add(f"ref-task-arithmetic-mt-all-l{lam}", f"Task arithmetic over all en->x experts, lambda {lam}", "task_arithmetic",
            "mt", mt_all, base="mixed", per_model={"weight": lam})
    for d in (0.2, 0.5, 0.8):
        add(f"ref-ties-mt-all-d{d}", f"TIES over all en->x experts, density {d}", "ties", "mt", mt_all, base="mixed",
            per_model={"weight": 1.0, "density": d})
        add(f"ref-dare-ties-mt-all-d{d}", f"DARE-TIES over all en->x experts, density {d}", "dare_ties", "mt", mt_all,
            base="mixed", per_model={"weight": 1.0, "density": d})
    add("ref-breadcrumbs-mt-all", "Model Breadcrumbs over all en->x experts", "breadcrumbs", "mt", mt_all, base="mixed",
        per_model={"weight": 1.0, "density": 0.8, "gamma": 0.01})
    add("ref-della-mt-all", "DELLA over all en->x experts", "della", "mt", mt_all, base="mixed",
        per_model={"weight": 1.0, "density": 0.5, "epsilon": 0.1}, params={"lambda": 1.0})
    add("ref-model-stock-mt-all", "Model Stock over all en->x experts", "model_stock", "mt", mt_all, base="mixed")
    add("ref-multislerp-mt-all", "Multi-SLERP over all en->x experts", "multislerp", "mt", mt_all, per_model=w1)
    add("ref-karcher-mt-all", "Karcher mean of all en->x experts", "karcher", "mt", mt_all)
    for name in ("mt-related", "mt-divergent"):
        models, what = sets[name], name.split("-")[1]
        add(f"ref-linear-{name}", f"Linear average of the {what} en->x experts", "linear", "mt", models, per_model=w1)
        add(f"ref-task-arithmetic-{name}-l0.5", f"Task arithmetic over the {what} experts, lambda 0.5", "task_arithmetic",
            "mt", models, base="mixed", per_model={"weight": 0.5})
        add(f"ref-ties-{name}-d0.5", f"TIES over the {what} experts, density 0.5", "ties", "mt", models, base="mixed",
            per_model={"weight": 1.0, "density": 0.5})
        add(f"ref-dare-ties-{name}-d0.5", f"DARE-TIES over the {what} experts, density 0.5", "dare_ties", "mt", models,
            base="mixed", per_model={"weight": 1.0, "density": 0.5})
        add(f"ref-karcher-{name}", f"Karcher mean of the {what} experts", "karcher", "mt", models)
    for name in ("mt-de-ru", "mt-fr-ar"):
        add(f"ref-linear-{name}", f"Linear average of {' and '.join(sets[name])} (mixed: related and divergent)", "linear",
            "mt", sets[name], per_model=w1)
        add(f"ref-ties-{name}-d0.5", f"TIES over {' and '.join(sets[name])}, density 0.5", "ties", "mt", sets[name],
            base="mixed", per_model={"weight": 1.0, "density": 0.5})
    for a, b in (("fr", "es"), ("ru", "ar")):
        add(f"ref-slerp-mt-{a}-{b}", f"SLERP between mt-en-{a} and mt-en-{b}, t = 0.5", "slerp", "mt", mt(a, b),
            base=f"mt-en-{a}", params={"t": 0.5})
        add(f"ref-nuslerp-mt-{a}-{b}", f"NuSLERP between mt-en-{a} and mt-en-{b}", "nuslerp", "mt", mt(a, b), per_model=w1)
    _set_grid(g, add)
    return g


# The set grid (issue 12.3): every constituent set below merged with linear, task arithmetic and TIES, so a
# correlation over sets has power. Task arithmetic here is the plain sum of task vectors (lambda 1, Ilharco et al.
# 2023); for two constituents lambda 0.5 would equal the linear average. TIES keeps density 0.5 (Yadav et al. 2023).
GRID_METHODS = (("linear", "", None), ("task_arithmetic", "-l1.0", {"weight": 1.0}),
                ("ties", "-d0.5", {"weight": 1.0, "density": 0.5}))


def constituent_sets() -> list[tuple[str, str, list[str], str]]:
    """(name, group, constituents, base for task vectors) of every constituent set in the grid: all pairs of
    monolingual experts, all pairs of translation experts, the cross-initialisation pairs, continued-pre-training
    pairs (en with each language, one related and one divergent pair), the related groups, and every arm's 'all'."""
    from itertools import combinations

    out = []
    for a, b in combinations(LANGUAGES, 2):
        out.append((f"mono-{a}-{b}", "mono-pair", [f"mono-{a}", f"mono-{b}"], "init-s0"))
    for a, b in combinations(TARGETS, 2):
        out.append((f"mt-{a}-{b}", "mt-related" if {a, b} <= RELATED else ("mt-divergent" if {a, b} <= DIVERGENT else "mt-mixed"),
                    [f"mt-en-{a}", f"mt-en-{b}"], "mixed"))
    for a, b in (("mono-en", "mono-ru-s1"), ("mono-en-s1", "mono-ru"), ("mono-en", "mono-en-s1"), ("mono-ru", "mono-ru-s1"),
                 ("mono-en-s1", "mono-ru-s1")):
        same_s1 = a.endswith("-s1") and b.endswith("-s1")
        out.append((f"{a}-{b.removeprefix('mono-')}", "same-init-s1" if same_s1 else "cross-init", [a, b],
                    "init-s1" if same_s1 else "init-s0"))
    for a, b in [("en", x) for x in TARGETS] + [("fr", "es"), ("ru", "ar")]:
        out.append((f"cpt-{a}-{b}", "cpt-pair", [f"cpt-{a}", f"cpt-{b}"], "mixed"))
    rel = [l for l in LANGUAGES if GENUS[l] == "Romance"]
    out += [("mono-related", "mono-related", [f"mono-{l}" for l in rel], "init-s0"),
            ("cpt-related", "cpt-related", [f"cpt-{l}" for l in rel], "mixed"),
            ("mt-related", "mt-related", [f"mt-en-{l}" for l in rel], "mixed"),
            ("mono-all", "mono-all", [f"mono-{l}" for l in LANGUAGES], "init-s0"),
            ("cpt-all", "cpt-all", [f"cpt-{l}" for l in LANGUAGES], "mixed"),
            ("mt-all", "mt-all", [f"mt-en-{x}" for x in TARGETS], "mixed")]
    return out


RELATED = {l for l, g in GENUS.items() if g in ("Germanic", "Romance")} - {"en"}  # as the replication table groups them
DIVERGENT = set(GENUS) - RELATED - {"en"}


def _set_grid(g: list[dict], add) -> None:
    """Add linear, task arithmetic and TIES over every constituent set, skipping a (method, set, base, parameters)
    already in the grid so that no recipe is written twice."""
    seen = {(r["method"], frozenset(r["constituents"]), r["base"], yaml.safe_dump(r["recipe"].get("models", [{}])[0].get("parameters")))
            for r in g}
    for name, group, models, base in constituent_sets():
        arm = "mt" if group.startswith("mt") else ("cpt" if group.startswith("cpt") else "pretrain")
        for method, suffix, per_model in GRID_METHODS:
            pm = per_model or {"weight": 1.0}
            b = None if method == "linear" else base
            if (method, frozenset(models), b, yaml.safe_dump(pm)) in seen:
                continue
            what = {"linear": "Linear average", "task_arithmetic": "Task arithmetic (lambda 1.0)",
                    "ties": "TIES (density 0.5)"}[method]
            add(f"ref-{method.replace('_', '-')}-{name}{suffix}", f"{what} of {', '.join(models)}"
                + (f" from {base}" if b else "") + f" ({group} set)", method, arm, models, base=b, per_model=pm)


def write_grid(root: Path) -> list[Path]:
    """Write submissions/<id>/{submission.yaml, recipe.yml} for every reference merge; prune none."""
    written = []
    for ref in reference_grid():
        d = root / ref["id"]
        manifest = {"schema_version": 1, "id": ref["id"], "title": ref["title"], "authors": ["babelmerge maintainers"],
                    "contact": "the babelmerge maintainers, through this repository's issues",
                    "method": ref["method"], "method_family": ref["method"], "kind": "recipe", "arm": ref["arm"],
                    "constituents": [_m(c) for c in ref["constituents"]],
                    "base_model": _m(ref["base"]) if ref["base"] else None,
                    "recipe": "recipe.yml", "suites": ["babel-mini-v2"], "generated_by": "harness/grid.py",
                    "license": "CC-BY-4.0"}
        store.atomic_write_text(d / "submission.yaml", "# generated by `babelmerge grid`; do not edit\n"
                                + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
        store.atomic_write_text(d / "recipe.yml", "# generated by `babelmerge grid`; do not edit\n"
                                + yaml.safe_dump(ref["recipe"], sort_keys=False))
        written.append(d)
    return written
