"""A seed's model pool as data (scenarios/<id>.yaml): its models (pinned hub ids or local checkpoints the user trains),
the base, and the merge grid, expanded into mergekit recipes; hub ids are used only when pinned to a commit
(`babelmerge pin SCENARIO` resolves them online into <id>.pins.json beside the scenario)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from . import store

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"
_REV = re.compile(r"^[0-9a-f]{40}$")
PER_MODEL = ("weight", "density")   # mergekit per-model parameters; every other grid key is a global parameter


class ScenarioError(ValueError):
    """A scenario that cannot be used as it stands: one line naming the file, the field and the fix."""


def scenario_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    return p if p.suffix else SCENARIOS_DIR / f"{name_or_path}.yaml"


def pins_path(path: Path) -> Path:
    return path.with_name(path.stem + ".pins.json")


def load_scenario(name_or_path: str) -> dict:
    """The scenario with its pins (if any) applied to its hub models' revisions."""
    path = scenario_path(name_or_path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario; scenarios live in {SCENARIOS_DIR} as <id>.yaml")
    sc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("id", "models", "grid"):
        if not isinstance(sc, dict) or key not in sc:
            raise ScenarioError(f"{path}: field '{key}' is missing; see scenarios/seed-a.yaml for the form")
    pins = store.read_json(pins_path(path)) if pins_path(path).is_file() else {}
    for name, m in sc["models"].items():
        if ("hub" in m) == ("path" in m):
            raise ScenarioError(f"{path}: models.{name}: give exactly one of 'hub' (org/name) or 'path' (a local checkpoint)")
        if "hub" in m and m.get("revision") is None and name in pins:
            m["revision"] = pins[name]
    if sc.get("base") is not None and sc["base"] not in sc["models"]:
        raise ScenarioError(f"{path}: base: '{sc['base']}' is not one of its models; name one of {', '.join(sc['models'])}")
    sc["path"] = str(path)
    return sc


def model_ref(sc: dict, name: str, checkpoints: Path | None = None) -> str:
    """Where a scenario model is read from: `org/name@<40-hex>` for a pinned hub model, a folder for a local one.
    An unpinned hub id or a missing local checkpoint is refused with one line."""
    m = sc["models"][name]
    if "hub" in m:
        rev = m.get("revision")
        if not rev or not _REV.match(str(rev)):
            raise ScenarioError(f"{sc['path']}: models.{name}.revision: {m['hub']} is not pinned to a commit; run "
                                f"`babelmerge pin {sc['id']}` online, or write its 40-hex revision there")
        return f"{m['hub']}@{rev}"
    if checkpoints is None:
        raise ScenarioError(f"{sc['path']}: models.{name}: a local checkpoint you train ({m['path']}); pass "
                            "--checkpoints DIR, the folder that holds it")
    folder = Path(checkpoints) / m["path"]
    if not (folder / "config.json").is_file():
        raise ScenarioError(f"{folder}: no checkpoint (config.json) for models.{name} of {sc['path']}; train it and "
                            "save it there with save_pretrained, as the scenario's header says")
    return str(folder)


def recipes(sc: dict, checkpoints: Path | None = None, grids: list[str] | None = None) -> dict[str, dict]:
    """Every point of the named grids (default: all) as a mergekit recipe over all the scenario's models but the
    base: {'<grid>-<i>': recipe}. Refuses (one line) a method that needs a base the scenario does not name, an
    unknown grid, and any unpinned or missing model."""
    unknown = [g for g in grids or [] if g not in sc["grid"]]
    if unknown:
        raise ScenarioError(f"{sc['path']}: grid: no '{unknown[0]}'; choose from {', '.join(sc['grid'])}")
    base = sc.get("base")
    members = [n for n in sc["models"] if n != base]
    refs = {n: model_ref(sc, n, checkpoints) for n in members + ([base] if base else [])}
    out = {}
    for gname, g in sc["grid"].items():
        if grids and gname not in grids:
            continue
        if g.get("needs_base") and not base:
            raise ScenarioError(f"{sc['path']}: grid.{gname}: {g['method']} needs a base model and the scenario names "
                                "none (base: null); choose and state one, or leave this grid out")
        for i, point in enumerate(g["points"]):
            per = {k: v for k, v in point.items() if k in PER_MODEL}
            glob = {k: v for k, v in point.items() if k not in PER_MODEL}
            r = {"merge_method": g["method"], "dtype": sc.get("dtype", "float32"),
                 "models": [{"model": refs[n], **({"parameters": per} if per else {})} for n in members]}
            if base:
                r["base_model"] = refs[base]
            if glob:
                r["parameters"] = glob
            out[f"{gname}-{i}"] = r
    return out


def pin(name_or_path: str) -> Path:
    """Resolve every hub model's `ref` (a branch or tag) to its commit with huggingface_hub and write
    <id>.pins.json (online only; only `babelmerge pin` calls this)."""
    from huggingface_hub import HfApi

    path = scenario_path(name_or_path)
    sc = load_scenario(str(path))
    api, pins = HfApi(), {}
    for name, m in sc["models"].items():
        if "hub" in m:
            pins[name] = api.model_info(m["hub"], revision=m.get("ref") or "main").sha
    store.write_json(pins_path(path), pins)
    return pins_path(path)
