"""The scenario set (issue 15.1): every constituent set of the reference grid (grid.constituent_sets) as a named
merge scenario with its base model, group and category, versioned beside the suite, so that a merge method can be
benchmarked on the same sets as every other method."""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import home_language
from .grid import constituent_sets

SCENARIO_SET = "babel-mini-scenarios-v1"  # bump when a scenario is added, removed or changed

# grid group -> the category a method's row is broken down by (the list, plus the two grid groups it
# does not name: related monolingual experts and translation pairs with one related and one divergent target)
CATEGORY = {"mono-pair": "monolingual pairs", "same-init-s1": "monolingual pairs", "mono-related": "monolingual related",
            "mono-all": "all monolingual", "mt-related": "translation related", "mt-divergent": "translation divergent",
            "mt-mixed": "translation mixed", "mt-all": "all translation", "cpt-pair": "continued pre-training",
            "cpt-related": "continued pre-training", "cpt-all": "continued pre-training",
            "cross-init": "cross-initialisation"}


@dataclass(frozen=True)
class Scenario:
    """One merge scenario: merge these family members (task vectors against `base`), score on their tasks."""

    id: str
    group: str                      # grid.constituent_sets' label
    category: str                   # CATEGORY[group]
    constituents: tuple[str, ...]   # family member names
    base: str                       # the family member task vectors are taken against
    tasks: tuple[str, ...]          # the suite tasks the constituents are experts in: lm:<l>, mt:<pivot>-<x>

    @property
    def arm(self) -> str:
        return "mt" if self.group.startswith("mt") else ("cpt" if self.group.startswith("cpt") else "pretrain")


def expert_tasks(constituents, pivot: str = "en") -> tuple[str, ...]:
    """The task each constituent is the expert of, in order, without repeats: mt-<pivot>-<x> -> mt:<pivot>-<x>;
    mono-<l>, mono-<l>-s1 and cpt-<l> -> lm:<l>."""
    out = []
    for c in constituents:
        lang = home_language(c)
        t = f"mt:{pivot}-{lang}" if c.startswith("mt-") else f"lm:{lang}"
        if lang is not None and t not in out:
            out.append(t)
    return tuple(out)


def scenarios() -> list[Scenario]:
    """Every scenario of SCENARIO_SET, in the grid's order."""
    return [Scenario(name, group, CATEGORY[group], tuple(models), base, expert_tasks(models))
            for name, group, models, base in constituent_sets()]


def select(ids: list[str] | None) -> list[Scenario]:
    """The named scenarios (all when ids is None), in the set's order; an unknown id raises one line."""
    every = scenarios()
    if ids is None:
        return every
    known = {s.id for s in every}
    bad = [i for i in ids if i not in known]
    if bad:
        raise ValueError(f"--scenarios: '{bad[0]}' is not a scenario of {SCENARIO_SET}; `babelmerge scenarios` lists them")
    return [s for s in every if s.id in set(ids)]


def lines() -> list[str]:
    """`babelmerge scenarios`: one line per scenario, its id first."""
    return [f"{s.id}\t{s.category}\tbase {s.base}\t{' + '.join(s.constituents)}\ttasks {', '.join(s.tasks)}"
            for s in scenarios()]
