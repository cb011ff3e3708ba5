"""The mergekit bridge: resolve a recipe's family references to checkpoints, run mergekit's Python API,
and cache the output by the merge's identity (identity.merge_identity: recipe, constituent identities,
mergekit version, seed)."""

from __future__ import annotations

import copy
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import yaml

from . import identity, store
from .family.build import resolve


class MergeError(ValueError):
    """A recipe that mergekit could not execute: one line."""


def model_refs(recipe: dict) -> list[str]:
    """Every model a mergekit recipe names (models, base_model, slices' sources), in order, without repeats."""
    refs = []

    def add(r):
        if isinstance(r, str) and r not in refs:
            refs.append(r)

    items = lambda x: x if isinstance(x, list) else []
    add(recipe.get("base_model"))
    for m in items(recipe.get("models")):
        add(m.get("model") if isinstance(m, dict) else None)
    for sl in items(recipe.get("slices")):
        for src in items(sl.get("sources") if isinstance(sl, dict) else None):
            add(src.get("model") if isinstance(src, dict) else None)
    return refs


def _substitute(obj, mapping: dict[str, str]):
    if isinstance(obj, dict):
        return {k: _substitute(v, mapping) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, mapping) for v in obj]
    if isinstance(obj, str) and obj in mapping:
        return mapping[obj]
    return obj


def resolve_recipe(recipe: dict, preset: str) -> tuple[dict, dict[str, Path]]:
    """Replace `family:babel-mini/<member>` references by checkpoint paths; local folders stay as they are.
    Returns the resolved recipe and every referenced checkpoint folder (hashed into the cache key)."""
    paths = {r: resolve(r, preset) if r.startswith("family:") else Path(r) for r in model_refs(recipe)}
    for r, p in paths.items():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"recipe model '{r}': no checkpoint at {p}; use family:babel-mini/<member> or a local folder")
    return _substitute(copy.deepcopy(recipe), {r: str(p) for r, p in paths.items()}), paths


def read_recipe(recipe_path: Path) -> dict:
    return yaml.safe_load(Path(recipe_path).read_text(encoding="utf-8"))


def recipe_identity(recipe: dict, seed: int, identity_of: Callable[[str], str]) -> str:
    """The merge's identity from its recipe, without running it. identity_of: model ref -> that model's identity
    (a family member's recipe identity; a local folder's content hash)."""
    return identity.merge_identity(recipe, {r: identity_of(r) for r in model_refs(recipe)},
                                   metadata.version("mergekit"), seed)


def local_identity(ref: str) -> str:
    """A recipe model that is a local folder: its content hash."""
    return identity.model_hash(Path(ref))


def run_recipe(recipe_path: Path, preset: str, seed: int, device: str = "cpu", log=print,
               identity_of: Callable[[str], str] | None = None) -> tuple[Path, dict]:
    """Execute a recipe (cached by its identity); returns the merged checkpoint folder and its merge provenance.
    Family members the recipe names must be built. identity_of: see recipe_identity (default: family members
    by their build record, local folders by content)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    recipe = read_recipe(recipe_path)
    resolved, paths = resolve_recipe(recipe, preset)
    identity_of = identity_of or (lambda r: store.read_json(paths[r] / "member.json")["key"] if r.startswith("family:")
                                  else local_identity(r))
    key = recipe_identity(recipe, seed, identity_of)
    out = store.home() / "merges" / key[:24]
    meta = out / "babelmerge-merge.json"
    if meta.exists() and store.read_json(meta).get("sha256") == identity.weight_hashes(out):
        return out, store.read_json(meta)["provenance"]
    log(f"[merge] {recipe_path.parent.name}: {recipe.get('merge_method')} over {len(paths)} models")
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        config = MergeConfiguration.model_validate(resolved)
        run_merge(config, str(tmp), options=MergeOptions(cuda=device.startswith("cuda"), copy_tokenizer=True,
                                                          random_seed=seed, quiet=True, trust_remote_code=False,
                                                          safe_serialization=True, write_model_card=True))
    except Exception as e:  # mergekit raises many types; the contract is one line naming the recipe
        shutil.rmtree(tmp, ignore_errors=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise MergeError(f"{recipe_path}: merge_method: mergekit failed ({type(e).__name__}: {first}); "
                         "check the recipe against mergekit's documentation for this method") from None
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    prov = {"mergekit": metadata.version("mergekit"), "recipe": recipe, "key": key, "identity": key, "seed": seed,
            "constituents": {r: identity.model_hash(p) for r, p in paths.items()},
            "constituent_identities": {r: identity_of(r) for r in paths}, "wall_s": round(time.perf_counter() - t0, 3)}
    store.write_json(meta, {"sha256": identity.weight_hashes(out), "provenance": prov, "model_sha256": identity.model_hash(out)})
    return out, prov
