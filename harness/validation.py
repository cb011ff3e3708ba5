"""`babelmerge validate`: every check a submission gets before anything runs it, one line per problem,
`file: field: what is wrong; what to do`. Never raises on bad input."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from . import schema
from .safety import UnsafeCheckpoint, inside, inspect_checkpoint

FAMILY_PREFIX = "family:babel-mini/"
NEEDS_BASE = {"task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della",
              "della_linear", "model_stock", "sce"}
PAIRS = {"slerp": 2, "nuslerp": 2}


def family_members() -> set[str]:
    from .family.build import members
    from .family.presets import PRESETS

    return {m.name for m in members(PRESETS["tiny"])}


def _pydantic_lines(f: Path, e: ValidationError) -> list[str]:
    out = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"]) or "-"
        msg = err["msg"].removeprefix("Value error, ")
        fix = "" if ";" in msg else "; see submissions/README.md for the format"
        out.append(f"{f}: {field}: {msg}{fix}")
    return out


def read_manifest(folder: Path) -> tuple[schema.Submission | None, list[str]]:
    f = folder / "submission.yaml"
    if f.is_symlink():
        return None, [f"{f}: -: symbolic links are refused; commit the file itself"]
    if not f.is_file():
        return None, [f"{f}: -: file missing; every submission folder needs a submission.yaml"]
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, [f"{f}: -: not valid YAML ({first}); fix the syntax"]
    if not isinstance(data, dict):
        return None, [f"{f}: -: must be a mapping of fields (key: value); see submissions/README.md"]
    try:
        m = schema.Submission.model_validate(data)
    except ValidationError as e:
        return None, _pydantic_lines(f, e)
    if m.id != folder.name:
        return m, [f"{f}: id: '{m.id}' differs from the folder name '{folder.name}'; make them equal"]
    return m, []


def check_refs(f: Path, m: schema.Submission, members: set[str]) -> list[str]:
    out = []
    for field, refs in (("constituents", m.constituents), ("base_model", [m.base_model] if m.base_model else [])):
        for ref in refs:
            if ref.startswith(FAMILY_PREFIX) and ref[len(FAMILY_PREFIX):] not in members:
                out.append(f"{f}: {field}: '{ref}' is not a babel-mini family member; choose one of "
                           f"{', '.join(sorted(members))}")
    kinds = {r.startswith(FAMILY_PREFIX) for r in m.constituents + ([m.base_model] if m.base_model else [])}
    if len(kinds) > 1:
        out.append(f"{f}: constituents: mixes family members and hub models, whose tokenizers and vocabularies differ; "
                   "merge models that share one tokenizer")
    for s in m.suites:
        from .suite import SUITES_DIR

        if not (SUITES_DIR / f"{s}.yaml").is_file():
            out.append(f"{f}: suites: unknown suite '{s}'; use one of the files in suites/")
    return out


def check_recipe(folder: Path, m: schema.Submission) -> list[str]:
    from .merge import model_refs

    f = folder / (m.recipe or "recipe.yml")
    if f.is_symlink() or not inside(folder, f):
        return [f"{folder / 'submission.yaml'}: recipe: '{m.recipe}' leaves the submission folder; put the recipe inside it"]
    if not f.is_file():
        return [f"{folder / 'submission.yaml'}: recipe: '{m.recipe}' is missing; add it beside submission.yaml"]
    try:
        recipe = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        return [f"{f}: -: not valid YAML ({str(e).splitlines()[0]}); fix the syntax"]
    if not isinstance(recipe, dict):
        return [f"{f}: -: a mergekit recipe is a mapping (merge_method, models, ...); see submissions/README.md"]
    method = recipe.get("merge_method")
    from mergekit.merge_methods import registry

    try:
        registry.get(str(method))
    except RuntimeError:
        return [f"{f}: merge_method: '{method}' is not a mergekit method; use one of: {', '.join(schema.KNOWN_METHODS)}"]
    from mergekit.config import MergeConfiguration

    try:
        MergeConfiguration.model_validate(recipe)
    except ValidationError as e:
        return [f"{f}: {'.'.join(str(p) for p in err['loc']) or '-'}: {err['msg']}; fix the recipe (mergekit's format)"
                for err in e.errors()[:3]]
    refs = model_refs(recipe)
    out = []
    models = [x.get("model") for x in recipe.get("models") or [] if isinstance(x, dict)]
    if method in PAIRS and len(models) != PAIRS[method]:
        out.append(f"{f}: models: {method} merges exactly {PAIRS[method]} models, got {len(models)}; "
                   "use multislerp or karcher for more")
    if (method in NEEDS_BASE or method == "slerp") and not recipe.get("base_model"):
        out.append(f"{f}: base_model: {method} needs a base model; add base_model: family:babel-mini/mixed (or the shared base)")
    if m.method_family and m.method_family != method:
        out.append(f"{folder / 'submission.yaml'}: method_family: '{m.method_family}' but the recipe runs '{method}'; make them agree")
    base = recipe.get("base_model")
    named = [r for r in refs if r != base] or refs
    if set(named) != set(m.constituents) and set(refs) != set(m.constituents):
        out.append(f"{folder / 'submission.yaml'}: constituents: {sorted(m.constituents)} differ from the recipe's models "
                   f"{sorted(named)}; list the same models")
    if base and m.base_model != base:
        out.append(f"{folder / 'submission.yaml'}: base_model: '{m.base_model}' but the recipe's base is '{base}'; make them agree")
    for r in refs:
        try:
            schema._model_ref(str(r))
        except ValueError as e:
            out.append(f"{f}: models: '{r}': {e}")
    return out


def validate_folder(folder: Path, members: set[str] | None = None, max_bytes: int | None = None) -> list[str]:
    """Every problem of one submission folder, one line each; [] when it is valid. Control characters that the
    manifest put into a message (a field named "\\n") are shown escaped, so a problem is always one line."""
    return [p.replace("\r", "\\r").replace("\n", "\\n") for p in _validate_folder(folder, members, max_bytes)]


def _validate_folder(folder: Path, members: set[str] | None, max_bytes: int | None) -> list[str]:
    try:
        if folder.is_symlink():
            return [f"{folder}: -: the submission folder is a symbolic link; commit a real folder"]
        m, problems = read_manifest(folder)
        if m is None:
            return problems
        members = members if members is not None else family_members()
        problems += check_refs(folder / "submission.yaml", m, members)
        if m.kind == "recipe":
            problems += check_recipe(folder, m)
        elif m.checkpoint and m.checkpoint.path is not None:
            try:
                inspect_checkpoint(folder / m.checkpoint.path, folder, m.checkpoint.sha256,
                                   **({"max_bytes": max_bytes} if max_bytes else {}))
            except UnsafeCheckpoint as e:
                problems.append(str(e))
        return problems
    except Exception as e:  # the contract is one line per problem, never a traceback
        return [f"{folder}: -: could not be checked ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "report this as a bug"]


def validate_paths(paths: list[Path]) -> tuple[list[str], int]:
    """Problems of several submission folders (plus duplicate ids across them) and how many were checked."""
    members = family_members()
    problems, ids = [], {}
    for folder in paths:
        problems += validate_folder(folder, members)
        m, _ = read_manifest(folder) if (folder / "submission.yaml").is_file() else (None, [])
        if m is not None:
            ids.setdefault(m.id.lower(), []).append(folder)
    for key, folders in ids.items():
        if len(folders) > 1:
            problems.append(f"{folders[1] / 'submission.yaml'}: id: '{key}' is also used by {folders[0]}; choose another id")
    return problems, len(paths)
