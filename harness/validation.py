"""`babelmerge validate` and the gate every command goes through: every check a submission gets before anything
reads it further, one line per problem, `file: field: what is wrong; what to do`, escaped. Never raises on bad
input. The bounds are stated in submissions/README.md."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import yaml
from pydantic import ValidationError

from . import schema
from .safety import BIDI, UnsafeCheckpoint, escape, inside, inspect_checkpoint

FAMILY_PREFIX = "family:babel-mini/"
NEEDS_BASE = {"task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della",
              "della_linear", "model_stock", "sce"}
PAIRS = {"slerp": 2, "nuslerp": 2}
MERGE_DTYPES = ("float32", "bfloat16", "float16", "float64")
MAX_YAML_BYTES = 2**20     # submission.yaml and the recipe, checked before either is parsed
MAX_YAML_DEPTH = 16        # nesting of mappings and lists
MAX_YAML_NODES = 10_000    # scalars, mappings and lists in one file
MAX_LINE = 600             # characters of one problem line; a longer echo of a value is cut in the middle
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def line(text: str) -> str:
    """A problem line as printed: escaped (one line, no bidi tricks) and at most MAX_LINE characters, cut inside
    the 'what is wrong' part so the file, the field and the fix stay whole."""
    text = escape(text)
    if len(text) <= MAX_LINE:
        return text
    head, sep, fix = text.rpartition("; ")
    fix = fix[:200]
    return head[:MAX_LINE - len(fix) - 5] + "..." + sep + fix


def _odd_char(text: str) -> str | None:
    """The first control, separator, bidi or lone-surrogate character of `text` (None if there is none)."""
    for ch in text:
        if ord(ch) in BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return ch
    return None


def _odd_text(f: Path, data) -> list[str]:
    """One line per top-level field holding a key or string with a control, bidi or surrogate character."""
    out = []
    top = data.items() if isinstance(data, dict) else [("-", data)]
    for key, value in top:
        stack, hit = [(str(key), key), (str(key), value)], None
        while stack and hit is None:
            where, v = stack.pop()
            if isinstance(v, str) and _odd_char(v) is not None:
                hit = (where, _odd_char(v))
            elif isinstance(v, dict):
                stack += [(f"{where}.{k}", k) for k in v] + [(f"{where}.{k}", x) for k, x in v.items()]
            elif isinstance(v, list):
                stack += [(f"{where}.{i}", x) for i, x in enumerate(v)]
        if hit:
            out.append(f"{f}: {hit[0]}: holds the control, bidi or surrogate character {escape(hit[1])}; "
                       "remove it (plain text only)")
    return out


def _yaml_problem(e: yaml.YAMLError) -> str:
    """What the YAML parser found, and where (1-based line and column)."""
    what = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
    mark = getattr(e, "problem_mark", None)
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else what


def load_yaml(f: Path, what: str) -> tuple[object, list[str]]:
    """Parse one untrusted YAML file within the bounds: size (before parsing), UTF-8, syntax, no aliases,
    depth and node count (from the event stream, before anything is built), plain text in every string."""
    if f.is_symlink():
        return None, [f"{f}: -: symbolic links are refused; commit the file itself"]
    if not f.is_file():
        return None, [f"{f}: -: file missing; {what}"]
    with open(f, "rb") as fh:
        raw = fh.read(MAX_YAML_BYTES + 1)
    if len(raw) > MAX_YAML_BYTES:
        return None, [f"{f}: -: larger than the limit of {MAX_YAML_BYTES} bytes; a manifest or recipe is a few "
                      "kilobytes, shorten it"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, [f"{f}: -: not UTF-8 (byte {e.start}); save the file as UTF-8"]
    try:
        depth, nodes = 0, 0
        for ev in yaml.parse(text, Loader=_Loader):
            if isinstance(ev, yaml.AliasEvent):
                return None, [f"{f}: -: YAML aliases (*name) are refused; write the value out"]
            if isinstance(ev, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                nodes += 1
            depth += isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
            depth -= isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent))
            if depth > MAX_YAML_DEPTH or nodes > MAX_YAML_NODES:
                return None, [f"{f}: -: nested deeper than {MAX_YAML_DEPTH} or more than {MAX_YAML_NODES} values; "
                              "a manifest or recipe is small and flat, simplify it"]
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        return None, [f"{f}: -: not valid YAML ({_yaml_problem(e)}); fix the syntax"]
    odd = _odd_text(f, data)
    return (None, odd) if odd else (data, [])


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
    data, problems = load_yaml(f, "every submission folder needs a submission.yaml")
    if problems:
        return None, problems
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
    from .suite import SUITES_DIR

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
        if not schema._ID.match(s) or not (SUITES_DIR / f"{s}.yaml").is_file():
            out.append(f"{f}: suites: unknown suite '{s}'; use one of the files in suites/")
    return out



def _inner_yaml(folder: Path, manifest, field: str, name: str | None, example: str, what: str) -> tuple[Path, dict | None, list[str]]:
    """A YAML mapping the manifest names, which must lie inside the submission folder and exist: its path and
    contents, or one line (what: the mapping's description, as the fix for a file that is not one)."""
    f = folder / (name or example)
    if not name or Path(name).is_absolute() or not inside(folder, f) or f.resolve() == folder.resolve():
        return f, None, [f"{manifest}: {field}: '{name}' leaves the submission folder; name a file inside it ({example})"]
    if not f.exists() and not f.is_symlink():
        return f, None, [f"{manifest}: {field}: '{name}' is missing; add it beside submission.yaml"]
    data, problems = load_yaml(f, f"add the {field.replace('_', ' ')} beside submission.yaml")
    if problems:
        return f, None, problems
    if not isinstance(data, dict):
        return f, None, [f"{f}: -: {what}"]
    return f, data, []

def check_recipe(folder: Path, m: schema.Submission) -> list[str]:
    from .merge import model_refs

    manifest = folder / "submission.yaml"
    f, recipe, problems = _inner_yaml(folder, manifest, "recipe", m.recipe, "recipe.yml",
                                      "a mergekit recipe is a mapping (merge_method, models, ...); see submissions/README.md")
    if problems:
        return problems
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
    for r in refs:
        try:
            schema._model_ref(str(r))
        except ValueError as e:
            out.append(f"{f}: models: '{r}' is refused (only family members and pinned hub models are read); {e}")
    refused = bool(out)  # a refused reference is reported once, not again as a disagreement
    for key in ("dtype", "out_dtype"):  # mergekit reads these only when it merges (mergekit.common.dtype_from_name)
        if recipe.get(key) is not None and str(recipe[key]).removeprefix("torch.") not in MERGE_DTYPES:
            out.append(f"{f}: {key}: '{recipe[key]}' is not a dtype mergekit merges in; use one of {', '.join(MERGE_DTYPES)}")
    models = [x.get("model") for x in recipe.get("models") or [] if isinstance(x, dict)]
    if method in PAIRS and len(models) != PAIRS[method]:
        out.append(f"{f}: models: {method} merges exactly {PAIRS[method]} models, got {len(models)}; "
                   "use multislerp or karcher for more")
    if (method in NEEDS_BASE or method == "slerp") and not recipe.get("base_model"):
        out.append(f"{f}: base_model: {method} needs a base model; add base_model: family:babel-mini/mixed (or the shared base)")
    if m.method_family and m.method_family != method:
        out.append(f"{manifest}: method_family: '{m.method_family}' but the recipe runs '{method}'; make them agree")
    base = recipe.get("base_model")
    named = [r for r in refs if r != base] or refs
    if not refused and set(named) != set(m.constituents) and set(refs) != set(m.constituents):
        out.append(f"{manifest}: constituents: {sorted(m.constituents)} differ from the recipe's models "
                   f"{sorted(named)}; list the same models")
    if not refused and base and m.base_model != base:
        out.append(f"{manifest}: base_model: '{m.base_model}' but the recipe's base is '{base}'; make them agree")
    return out


def check_method(folder: Path, m: schema.Submission, max_bytes: int | None = None) -> list[str]:
    """kind: method (issue 15.6): a method spec inside the submission naming a mergekit built-in (never code), or
    one checkpoint per scenario of the scenario set, every one inspected like a submitted checkpoint."""
    from .scenarios import SCENARIO_SET, scenarios

    manifest = folder / "submission.yaml"
    if m.method_spec is not None:
        f, data, problems = _inner_yaml(folder, manifest, "method_spec", m.method_spec, "method.yaml",
                                        "a method spec is a mapping of fields; see methods/specs/ for examples")
        if problems:
            return problems
        try:
            spec = schema.MethodSpec.model_validate(data)
        except ValidationError as e:
            return [p.replace("see submissions/README.md", "see methods/specs/") for p in _pydantic_lines(f, e)]
        if spec.module is not None:
            return [f"{f}: module: a submission never carries code that is run; name a mergekit built-in "
                    "(benchmark a new method on your own machine with `babelmerge methods bench`)"]
        return []
    out = []
    ids = [s.id for s in scenarios()]
    missing = [i for i in ids if i not in m.checkpoints]
    unknown = [k for k in m.checkpoints if k not in set(ids)]
    if missing:
        out.append(f"{manifest}: checkpoints: {len(missing)} of the {len(ids)} scenarios of {SCENARIO_SET} have no "
                   f"checkpoint (first: {missing[0]}); give one per scenario (`babelmerge scenarios` lists them)")
    if unknown:
        out.append(f"{manifest}: checkpoints.{unknown[0]}: not a scenario of {SCENARIO_SET}; use the ids "
                   "`babelmerge scenarios` lists")
    for sid, ck in m.checkpoints.items():
        if ck.path is None or ck.hub is not None:
            out.append(f"{manifest}: checkpoints.{sid}: give `path` (a folder inside the submission) and its sha256")
            continue
        try:
            inspect_checkpoint(folder / ck.path, folder, ck.sha256, **({"max_bytes": max_bytes} if max_bytes else {}))
        except UnsafeCheckpoint as e:
            out.append(str(e))
        except OSError as e:
            out.append(f"{folder / ck.path}: checkpoints.{sid}.path: cannot be read ({type(e).__name__}); give a folder "
                       "of regular files inside the submission")
    return out


def check_folder(folder: Path, members: set[str] | None = None,
                 max_bytes: int | None = None) -> tuple[schema.Submission | None, list[str]]:
    """The manifest of one submission folder and every problem it has (one escaped line each; [] when it is
    valid): manifest, references, recipe, checkpoint. The manifest is returned only when there is no problem."""
    try:
        m, problems = _check_folder(folder, members, max_bytes)
    except Exception as e:  # the contract is one line per problem, never a traceback
        m, problems = None, [f"{folder}: -: could not be checked ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0]}); report this as a bug"]
    return (None if problems else m), [line(p) for p in problems]


def _check_folder(folder: Path, members: set[str] | None, max_bytes: int | None):
    if folder.is_symlink():
        return None, [f"{folder}: -: the submission folder is a symbolic link; commit a real folder"]
    if not folder.is_dir():
        return None, [f"{folder}: -: not a submission folder; give a folder holding submission.yaml"]
    m, problems = read_manifest(folder)
    if m is None:
        return None, problems
    members = members if members is not None else family_members()
    problems += check_refs(folder / "submission.yaml", m, members)
    if m.kind == "recipe":
        problems += check_recipe(folder, m)
    elif m.kind == "method":
        problems += check_method(folder, m, max_bytes)
    elif m.checkpoint and m.checkpoint.path is not None:
        try:
            inspect_checkpoint(folder / m.checkpoint.path, folder, m.checkpoint.sha256,
                               **({"max_bytes": max_bytes} if max_bytes else {}))
        except UnsafeCheckpoint as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{folder / m.checkpoint.path}: checkpoint.path: cannot be read ({type(e).__name__}); "
                            "give a folder of regular files inside the submission")
    return m, problems


def validate_folder(folder: Path, members: set[str] | None = None, max_bytes: int | None = None) -> list[str]:
    """Every problem of one submission folder, one escaped line each; [] when it is valid."""
    return check_folder(folder, members, max_bytes)[1]


def validate_paths(paths: list[Path]) -> tuple[list[str], int]:
    """Problems of several submission folders (plus duplicate ids across them) and how many were checked."""
    members = family_members()
    problems, ids = [], {}
    for folder in paths:
        m, lines = check_folder(folder, members)
        problems += lines
        if m is not None:
            ids.setdefault(m.id, []).append(folder)
    for key, folders in ids.items():
        for other in folders[1:]:
            problems.append(line(f"{other / 'submission.yaml'}: id: '{key}' is also used by {folders[0]}; choose another id"))
    return problems, len(paths)
