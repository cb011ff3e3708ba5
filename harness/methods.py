"""Merge methods as benchmark entries (issue 15.2, 15.3): the method spec (schema.MethodSpec) loaded with one line
per problem, a researcher's own method module registered with mergekit's API, the tuning grid, the tuning rule
(equal for every method) and the mergekit recipe of a method on a scenario. Pure, except loading files."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import random
import sys
from pathlib import Path

from pydantic import ValidationError

from . import schema, store
from .scenarios import Scenario
from .submissions import REPO, SUBMISSIONS_DIR

METHODS_DIR = REPO / "methods"      # methods/<id>/<scenario>/method.json; methods/specs/*.yaml: the reference methods
SPECS_DIR = METHODS_DIR / "specs"
REF = "family:babel-mini/"

# The tuning rule, the same for every method (issue 15.3). A method is tuned per scenario on at most TUNE_BUDGET
# points of its grid: all of them when the grid is that small, otherwise a fixed seeded sample (random.Random(suite
# seed).sample over the grid in the spec's order; the same indices for every method with a grid of that size). Each
# point is merged and scored on the dev split (the suite's dev variant: same tasks, counts and validity rule); the
# point with the highest mean normalized dev score over the scenario's tasks that are live on dev is chosen (ties:
# the earlier point). A one-point grid is not tuned. With no live dev task, the first point is kept.
TUNE_BUDGET = 4
TUNING_RULE = (f"at most {TUNE_BUDGET} grid points per method and scenario (a seeded sample of the grid, seed = the "
               "suite's, when it is larger); each merged and scored on the dev split; the highest mean normalized dev "
               "score over the scenario's dev-live tasks wins (ties: the earlier point); a one-point grid is not tuned")


class MethodError(ValueError):
    """A method spec or module that cannot be used: one line naming the file, the field and the fix."""


def load_spec(path: Path) -> tuple[schema.MethodSpec, list[str]]:
    """A method spec file, or (None, one line per problem): the same YAML bounds as a submission's manifest."""
    from .validation import _pydantic_lines, line, load_yaml

    path = Path(path)
    data, problems = load_yaml(path, "give the path of a method spec (see methods/specs/ for examples)")
    if problems:
        return None, [line(p) for p in problems]
    if not isinstance(data, dict):
        return None, [line(f"{path}: -: must be a mapping of fields (key: value); see methods/specs/ for examples")]
    try:
        spec = schema.MethodSpec.model_validate(data)
    except ValidationError as e:
        return None, [line(p.replace("see submissions/README.md for the format", "see methods/specs/ for examples"))
                      for p in _pydantic_lines(path, e)]
    return spec, []


def spec_or_raise(path: Path) -> schema.MethodSpec:
    spec, problems = load_spec(path)
    if problems:
        raise MethodError(problems[0])
    return spec


def module_path(spec: schema.MethodSpec, spec_path: Path) -> Path | None:
    """The method module's file: beside the spec (given relative to it), a regular file, never inside a submission."""
    if spec.module is None:
        return None
    f = Path(spec_path).parent / spec.module
    if f.is_symlink() or not f.is_file():
        raise MethodError(f"{spec_path}: module: '{spec.module}' is not a regular file beside the spec; give the "
                          "path of your .py file relative to the spec")
    if f.resolve().is_relative_to(SUBMISSIONS_DIR.resolve()) or Path(spec_path).resolve().is_relative_to(SUBMISSIONS_DIR.resolve()):
        raise MethodError(f"{spec_path}: module: code is never loaded from submissions/; benchmark your method from "
                          "your own folder, or submit it as kind: method naming a mergekit built-in")
    return f


def spec_sha256(spec: schema.MethodSpec, spec_path: Path) -> str:
    """What a method's results are reused for: the spec as loaded and the module's bytes."""
    f = module_path(spec, spec_path)
    return store.sha256_obj({"spec": spec.model_dump(mode="json"), "module": None if f is None else store.sha256_file(f)})


_LOADED: dict[str, str] = {}  # module file (resolved) -> its sha256 when imported


def register_module(spec: schema.MethodSpec, spec_path: Path) -> dict | None:
    """Import the spec's module (the researcher's own code, on their own machine: it registers its method with
    mergekit's `merge_method` decorator and `registry.register`), once per process, and check that the method is
    then known to mergekit. Returns what merge identities must include ({module sha256}) or None."""
    from mergekit.merge_methods import registry

    f = module_path(spec, spec_path)
    if f is None:
        return None
    sha = store.sha256_file(f)
    key = str(f.resolve())
    if key in _LOADED and _LOADED[key] != sha:
        raise MethodError(f"{f}: module: changed since it was imported in this process; run the command again")
    if key not in _LOADED:
        name = "babelmerge_method_" + hashlib.sha256(key.encode()).hexdigest()[:12]
        loader = importlib.util.spec_from_file_location(name, f)
        mod = importlib.util.module_from_spec(loader)
        sys.modules[name] = mod
        try:
            loader.loader.exec_module(mod)
        except Exception as e:  # the researcher's code: report it on one line
            sys.modules.pop(name, None)
            raise MethodError(f"{f}: module: importing it failed ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}); fix the module") from None
        _LOADED[key] = sha
    if spec.merge_method not in {m.spec.name for m in registry.registered_methods()}:
        raise MethodError(f"{spec_path}: merge_method: '{spec.merge_method}' is not registered by {spec.module}; "
                          "decorate the kernel with mergekit's merge_method(name=...) and pass it to registry.register")
    return {"method_module_sha256": sha}


def grid(spec: schema.MethodSpec) -> list[tuple[dict, dict]]:
    """Every (parameters, model_parameters) point of the spec's grid: the product of every list, in the spec's
    order (the first point takes every list's first value)."""
    keys = [("g", k) for k in spec.parameters] + [("m", k) for k in spec.model_parameters]
    values = [v if isinstance(v, list) else [v] for v in list(spec.parameters.values()) + list(spec.model_parameters.values())]
    out = []
    for combo in itertools.product(*values):
        g = {k: v for (w, k), v in zip(keys, combo) if w == "g"}
        m = {k: v for (w, k), v in zip(keys, combo) if w == "m"}
        out.append((g, m))
    return out


def sample(n: int, seed: int, budget: int = TUNE_BUDGET) -> list[int]:
    """The grid points tuned (TUNING_RULE): all of range(n) when n <= budget, else a seeded sample, sorted."""
    if n <= budget:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), budget))


def choose(dev_scores: list[float | None]) -> int:
    """The tuned point: the highest mean normalized dev score (ties: the earlier one); 0 when none has a score."""
    best = None
    for i, s in enumerate(dev_scores):
        if s is not None and s == s and (best is None or s > dev_scores[best]):
            best = i
    return 0 if best is None else best


def applies(spec: schema.MethodSpec, sc: Scenario) -> bool:
    """Whether a method runs on a scenario: a pairs-only method (SLERP) on scenarios of exactly two constituents."""
    return spec.constituents == "any" or len(sc.constituents) == 2


def recipe(spec: schema.MethodSpec, sc: Scenario, params: dict, model_params: dict) -> dict:
    """The mergekit recipe of one grid point on one scenario (family references, resolved only when merged)."""
    r = {"merge_method": spec.merge_method, "dtype": "float32",
         "models": [{"model": REF + c, **({"parameters": dict(model_params)} if model_params else {})}
                    for c in sc.constituents]}
    if spec.base == "scenario":
        r["base_model"] = REF + sc.base
    elif spec.base == "first":
        r["base_model"] = REF + sc.constituents[0]
    if params:
        r["parameters"] = dict(params)
    return r


def spec_files(root: Path = SPECS_DIR) -> list[Path]:
    """The reference method specs, sorted."""
    return sorted(root.glob("*.yaml")) if root.is_dir() else []
