"""`babelmerge validate`: each malformed submission yields one line `file: field: what; fix`, and random
manifests never end in a traceback."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.validation import validate_folder, validate_paths

REF = "family:babel-mini/"
GOOD = {"schema_version": 1, "id": "sub", "title": "TIES over related experts", "authors": ["Ada"], "contact": "ada@example.org",
        "method": "ties", "method_family": "ties", "kind": "recipe", "arm": "mt",
        "constituents": [REF + "mt-en-fr", REF + "mt-en-es"], "base_model": REF + "mixed", "recipe": "recipe.yml",
        "suites": ["babel-mini-v2"], "license": "CC-BY-4.0"}
RECIPE = {"merge_method": "ties", "dtype": "float32", "base_model": REF + "mixed",
          "models": [{"model": REF + "mt-en-fr", "parameters": {"weight": 1.0, "density": 0.5}},
                     {"model": REF + "mt-en-es", "parameters": {"weight": 1.0, "density": 0.5}}]}
LINE = re.compile(r"^\S+: [\w.\-]+: .+; .+$")


def make(tmp_path, manifest=None, recipe=None, name="sub", raw=None, raw_recipe=None):
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(raw, bytes):
        (d / "submission.yaml").write_bytes(raw)
    else:
        (d / "submission.yaml").write_text(raw if raw is not None else yaml.safe_dump(manifest if manifest is not None else GOOD))
    (d / "recipe.yml").write_text(raw_recipe if raw_recipe is not None else yaml.safe_dump(recipe if recipe is not None else RECIPE))
    return d


def with_(**kw):
    m = {**GOOD, **kw}
    return {k: v for k, v in m.items() if v is not ...}


def recipe_with(**kw):
    r = {**RECIPE, **kw}
    return {k: v for k, v in r.items() if v is not ...}


CASES = [  # (name, manifest, recipe, raw manifest, expected field, expected words)
    ("missing title", with_(title=...), None, None, "title", "Field required"),
    ("empty authors", with_(authors=[]), None, None, "authors", "at least 1"),
    ("blank author", with_(authors=["  "]), None, None, "authors", "author name is empty"),
    ("no contact", with_(contact=...), None, None, "contact", "Field required"),
    ("no license", with_(license=...), None, None, "license", "Field required"),
    ("unknown field", with_(colour="red"), None, None, "colour", "Extra inputs are not permitted"),
    ("bad kind", with_(kind="zip"), None, None, "kind", "'checkpoint' or 'recipe'"),
    ("bad arm", with_(arm="finetune"), None, None, "arm", "Input should be"),
    ("bad id chars", with_(id="My Sub"), None, None, "id", "use 2-80 characters"),
    ("id path traversal", with_(id="../x"), None, None, "id", "use 2-80 characters"),
    ("id differs from folder", with_(id="other"), None, None, "id", "differs from the folder name"),
    ("unknown method family", with_(method_family="magic"), None, None, "method_family", "not a mergekit method"),
    ("unpinned hub constituent", with_(constituents=[REF + "mt-en-fr", "meta/llama"]), None, None, "constituents", "40-hex"),
    ("branch-pinned hub", with_(constituents=[REF + "mt-en-fr", "meta/llama@main"]), None, None, "constituents", "40-hex"),
    ("duplicate constituent", with_(constituents=[REF + "mt-en-fr", REF + "mt-en-fr"]), None, None, "constituents", "listed twice"),
    ("unknown family member", with_(constituents=[REF + "mt-en-fr", REF + "mt-en-xx"]), None, None, "constituents", "not a babel-mini family member"),
    ("unknown base member", with_(base_model=REF + "nobody"), None, None, "base_model", "not a babel-mini family member"),
    ("mixes family and hub", with_(constituents=[REF + "mt-en-fr", "org/m@" + "a" * 40]), None, None, "constituents", "tokenizers"),
    ("unknown suite", with_(suites=["babel-huge-v9"]), None, None, "suites", "unknown suite"),
    ("recipe kind without recipe", with_(recipe=...), None, None, "-", "needs `recipe: recipe.yml`"),
    ("recipe and checkpoint", with_(checkpoint={"path": "ckpt", "sha256": {"model.safetensors": "0" * 64}}), None, None, "-", "no `checkpoint`"),
    ("recipe path escapes", with_(recipe="../recipe.yml"), None, None, "recipe", "leaves the submission folder"),
    ("recipe file missing", with_(recipe="other.yml"), None, None, "recipe", "is missing"),
    ("yaml syntax", None, None, "id: [unclosed\n", "-", "not valid YAML"),
    ("yaml not a mapping", None, None, "- a\n- b\n", "-", "must be a mapping"),
    ("wrong schema version", with_(schema_version=2), None, None, "schema_version", "Input should be 1"),
    ("unknown merge method", with_(method_family=...), recipe_with(merge_method="average"), None, "merge_method", "not a mergekit method"),
    ("slerp with three models", with_(method="slerp", method_family="slerp", constituents=[REF + "mt-en-fr", REF + "mt-en-es", REF + "mt-en-it"],
                                      base_model=REF + "mt-en-fr"),
     recipe_with(merge_method="slerp", base_model=REF + "mt-en-fr", parameters={"t": 0.5},
                 models=[{"model": REF + x} for x in ("mt-en-fr", "mt-en-es", "mt-en-it")]), None, "models", "exactly 2 models"),
    ("ties without base", with_(base_model=...), recipe_with(base_model=...), None, "base_model", "needs a base model"),
    ("method family disagrees", with_(method_family="linear"), None, None, "method_family", "make them agree"),
    ("constituents disagree", with_(constituents=[REF + "mt-en-fr", REF + "mt-en-it"]), None, None, "constituents", "differ from the recipe"),
    ("base disagrees", with_(base_model=REF + "mt-all"), None, None, "base_model", "make them agree"),
    ("recipe model unpinned", with_(constituents=[REF + "mt-en-fr", REF + "mt-en-es"]),
     recipe_with(models=[{"model": REF + "mt-en-fr", "parameters": {"weight": 1.0, "density": 0.5}},
                         {"model": "org/m", "parameters": {"weight": 1.0, "density": 0.5}}]), None, "models", "'org/m' is refused"),
    ("recipe model is a local path", None,
     recipe_with(models=[{"model": REF + "mt-en-fr", "parameters": {"weight": 1.0, "density": 0.5}},
                         {"model": "/etc", "parameters": {"weight": 1.0, "density": 0.5}}]), None, "models", "'/etc' is refused"),
    ("recipe is an absolute path", with_(recipe="/etc/hostname"), None, None, "recipe", "leaves the submission folder"),
    ("manifest over 1 MB", None, None, "title: " + "x" * (2**20) + "\n", "-", "larger than the limit of 1048576 bytes"),
    ("manifest nested too deep", None, None, "title: " + "[" * 40 + "]" * 40 + "\n", "-", "nested deeper than 16"),
    ("yaml alias", None, None, "a: &x [1]\nb: *x\n", "-", "aliases (*name) are refused"),
    ("lone surrogate", None, None, yaml.safe_dump(GOOD).replace("TIES over related experts", '"\\ud800x"'), *(
        ("-", "invalid Unicode character escape") if yaml.__with_libyaml__ else ("title", "\\ud800"))),
    ("bidi control", with_(title="Ties \u202eevil"), None, None, "title", "\\u202e"),
    ("not utf-8", None, None, b"title: \xff\xfe\n", "-", "not UTF-8"),
    ("recipe models wrong type", None, recipe_with(models="everything"), None, "models", "fix the recipe"),
]


@pytest.mark.parametrize("name,manifest,recipe,raw,field,words", CASES, ids=[c[0] for c in CASES])
def test_malformed_submission_one_clear_line(tmp_path, name, manifest, recipe, raw, field, words):
    d = make(tmp_path, manifest, recipe, raw=raw)
    problems = validate_folder(d)
    assert problems, f"{name}: not detected"
    hit = [p for p in problems if words in p]
    assert hit, problems
    line = hit[0]
    assert "\n" not in line and "Traceback" not in line
    assert LINE.match(line), line
    assert f": {field}:" in line or (field == "-" and ": -:" in line) or f".{field}:" in line, line


def test_case_count():
    assert len(CASES) >= 30


def test_valid_submission_passes(tmp_path):
    assert validate_folder(make(tmp_path)) == []


def test_duplicate_ids_across_folders(tmp_path):
    a = make(tmp_path, name="sub")
    b = make(tmp_path / "other", name="sub")
    problems, n = validate_paths([a, b])
    assert n == 2 and any("also used by" in p for p in problems)


def test_symlinked_manifest_refused(tmp_path):
    real = make(tmp_path / "real")
    d = tmp_path / "sub"
    d.mkdir()
    (d / "submission.yaml").symlink_to(real / "submission.yaml")
    assert "symbolic links are refused" in validate_folder(d)[0]


def test_cli_exit_codes_and_repo_submissions(tmp_path):
    good = subprocess.run([sys.executable, "-m", "harness.cli", "validate"], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout[-2000:]
    assert re.search(r"^(\d+) submission\(s\) checked, 0 problem\(s\)$", good.stdout, re.M)
    assert int(good.stdout.split(" submission")[0].splitlines()[-1]) >= 40
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(make(tmp_path, with_(title=...)))],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "title: Field required" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr
    schema_out = subprocess.run([sys.executable, "-m", "harness.cli", "schema"], capture_output=True, text=True, check=True)
    assert '"additionalProperties": false' in schema_out.stdout


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)),
                      max_leaves=12)
manifests = st.one_of(
    st.dictionaries(st.sampled_from(sorted(GOOD) + ["extra", "checkpoint"]), values, max_size=12),
    st.builds(lambda k, v: {**GOOD, k: v}, st.sampled_from(sorted(GOOD) + ["checkpoint"]), values),
    values)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=manifests, recipe=st.one_of(values, st.builds(lambda k, v: {**RECIPE, k: v}, st.sampled_from(sorted(RECIPE)), values)))
def test_random_manifests_never_traceback(tmp_path, manifest, recipe):
    d = tmp_path / "sub"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / "submission.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))
    (d / "recipe.yml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    problems = validate_folder(d)
    assert isinstance(problems, list)
    assert not any("could not be checked" in p for p in problems), problems  # the catch-all never fires
    assert all(isinstance(p, str) and "\n" not in p for p in problems)


def test_a_field_named_newline_stays_one_line(tmp_path):
    """Found by the property test above: a manifest key "\\n" once put a line break into the message."""
    d = tmp_path / "sub"
    d.mkdir()
    (d / "submission.yaml").write_text(yaml.safe_dump({"\n": None}))
    problems = validate_folder(d)
    assert problems and all("\n" not in p for p in problems)
    assert any("\\n" in p for p in problems)
