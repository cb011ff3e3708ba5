"""The mergekit bridge: resolve a recipe's family references (and pinned hub ids) to checkpoints, refusing
anything else, run mergekit's Python API, and cache the output by the merge's identity (identity.merge_identity:
recipe, constituent identities, mergekit version, seed)."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import yaml

from . import identity, schema, store
from .family.build import resolve
from .safety import escape, inspect_checkpoint


class MergeError(ValueError):
    """A recipe that is refused or that mergekit could not execute: one line (escaped)."""

    def __init__(self, line: str):
        super().__init__(escape(line))


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


def hub_checkpoint(ref: str) -> Path:
    """The hub cache folder of `org/name@<40-hex revision>`, inspected like a submitted checkpoint. The hub id is
    never read as a local path, even where one of that name exists."""
    from .sources import resolve_model

    if not schema.HUB_REF.match(ref) or Path(ref).exists():
        raise FileNotFoundError(f"{ref}: not a pinned hub id (org/name@<40-hex revision>), or one that is also a local "
                                "path; name the model on the hub")
    path = resolve_model(ref)
    inspect_checkpoint(path, path)
    return path


def checkpoint_of(ref: str, preset: str, recipe_path: Path, allow_local: bool = False) -> Path:
    """The checkpoint folder a recipe model names: `family:babel-mini/<member>` or a pinned hub id. Any other
    reference (a local path above all: a submitted recipe must read nothing outside the submission) is
    refused, unless `allow_local` (trusted callers only, such as this bridge's own tests)."""
    if schema.FAMILY_REF.match(ref):
        return resolve(ref, preset)
    if schema.HUB_REF.match(ref):
        return hub_checkpoint(ref)
    if allow_local:
        return Path(ref)
    raise MergeError(f"{recipe_path}: models: '{ref}' is refused; name a family member as family:babel-mini/<member> "
                     "or a hub model as org/name@<40-hex revision>")


def resolve_recipe(recipe: dict, preset: str, recipe_path: Path = Path("recipe.yml"),
                   allow_local: bool = False) -> tuple[dict, dict[str, Path]]:
    """Replace every model reference by its checkpoint folder (`checkpoint_of`). Returns the resolved recipe and
    every referenced checkpoint folder (hashed into the cache key)."""
    paths = {r: checkpoint_of(r, preset, recipe_path, allow_local) for r in model_refs(recipe)}
    for r, p in paths.items():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"recipe model '{r}': no checkpoint at {p}; use family:babel-mini/<member> or a local folder")
    return _substitute(copy.deepcopy(recipe), {r: str(p) for r, p in paths.items()}), paths


def read_recipe(recipe_path: Path) -> dict:
    return yaml.safe_load(Path(recipe_path).read_text(encoding="utf-8"))


def recipe_identity(recipe: dict, seed: int, identity_of: Callable[[str], str], extra: dict | None = None) -> str:
    """The merge's identity from its recipe, without running it. identity_of: model ref -> that model's identity
    (a family member's recipe identity; a checkpoint's content hash); extra: see identity.merge_identity."""
    return identity.merge_identity(recipe, {r: identity_of(r) for r in model_refs(recipe)},
                                   metadata.version("mergekit"), seed, extra)


def run_recipe(recipe_path: Path, preset: str, seed: int, device: str = "cpu", log=print,
               identity_of: Callable[[str], str] | None = None, allow_local: bool = False,
               extra_identity: dict | None = None) -> tuple[Path, dict]:
    """Execute a recipe (cached by its identity); returns the merged checkpoint folder and its merge provenance.
    Model references are resolved by `checkpoint_of` (local paths refused unless `allow_local`); family members
    the recipe names must be built. identity_of: see recipe_identity (default: family members by their build
    record, checkpoints by content); extra_identity: what else the merge depends on (a method module's sha256)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    recipe = read_recipe(recipe_path)
    if not isinstance(recipe, dict):
        raise MergeError(f"{recipe_path}: -: a mergekit recipe is a mapping (merge_method, models, ...); "
                         "run `babelmerge validate` on the submission")
    resolved, paths = resolve_recipe(recipe, preset, Path(recipe_path), allow_local)
    identity_of = identity_of or (lambda r: store.read_json(paths[r] / "member.json")["key"] if r.startswith("family:")
                                  else identity.model_hash(paths[r]))
    key = recipe_identity(recipe, seed, identity_of, extra_identity)
    out = store.home() / "merges" / key[:24]
    meta = out / "babelmerge-merge.json"
    if meta.exists() and store.read_json(meta).get("sha256") == identity.weight_hashes(out):
        return out, store.read_json(meta)["provenance"]
    log(f"[merge] {recipe_path.parent.name}: {recipe.get('merge_method')} over {len(paths)} models")
    t0 = time.perf_counter()
    # a folder of this process's own: two processes (Slurm array tasks, Ray workers) merging the same recipe on one
    # shared store never write into each other's output
    tmp = out.with_name(f"{out.name}.partial-{socket.gethostname()}-{os.getpid()}")
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
    try:
        tmp.rename(out)  # atomic; `out` only ever holds a finished merge
    except OSError:
        if not (out / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same recipe first: the same bytes, keep its
    prov = {"mergekit": metadata.version("mergekit"), "recipe": recipe, "key": key, "identity": key, "seed": seed,
            "constituents": {r: identity.model_hash(p) for r, p in paths.items()},
            "constituent_identities": {r: identity_of(r) for r in paths},
            **({"extra_identity": extra_identity} if extra_identity else {}), "wall_s": round(time.perf_counter() - t0, 3)}
    hashes = identity.weight_hashes(out)  # read once: model_sha256 is their content hash
    store.write_json(meta, {"sha256": hashes, "provenance": prov, "model_sha256": identity.content_hash(hashes)})
    return out, prov
