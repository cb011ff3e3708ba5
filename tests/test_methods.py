"""Method benchmarking (issue 15): the scenario set, method specs (one line per bad field), the tuning grid and
rule, recipes, and a method module registered with mergekit's own API, merged through our bridge."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness import methods, scenarios, schema
from harness.grid import constituent_sets
from harness.suite import dev_variant, load_suite

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "methods" / "sign-agree.yaml"


def test_scenarios_are_the_grid_sets():
    sc = scenarios.scenarios()
    sets = constituent_sets()
    assert [s.id for s in sc] == [n for n, *_ in sets] and len({s.id for s in sc}) == 55
    assert {s.category for s in sc} >= {"monolingual pairs", "all monolingual", "translation related",
                                        "translation divergent", "all translation", "continued pre-training",
                                        "cross-initialisation"}
    by = {s.id: s for s in sc}
    assert by["mono-en-en-s1"].tasks == ("lm:en",) and by["mono-en-en-s1"].base == "init-s0"
    assert by["mt-ru-ar"].category == "translation divergent" and by["mt-ru-ar"].tasks == ("mt:en-ru", "mt:en-ar")
    assert by["cpt-en-de"].base == "mixed" and by["cpt-en-de"].arm == "cpt"
    with pytest.raises(ValueError, match="'nope' is not a scenario"):
        scenarios.select(["mono-en-de", "nope"])
    assert [s.id for s in scenarios.select(["mt-all", "mono-en-de"])] == ["mono-en-de", "mt-all"]


def test_scenarios_command_lists_every_scenario_id_first():
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenarios"], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    body = [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]
    assert [ln.split("\t")[0] for ln in body] == [s.id for s in scenarios.scenarios()]
    assert scenarios.SCENARIO_SET in r.stdout


def test_reference_specs_load_and_cover_the_nine_methods():
    got = {}
    for f in methods.spec_files():
        spec, problems = methods.load_spec(f)
        assert problems == [], problems
        assert f.stem == spec.id
        got[spec.merge_method] = spec
    assert set(got) == {"linear", "task_arithmetic", "ties", "dare_ties", "slerp", "model_stock", "karcher", "della",
                        "breadcrumbs"}
    assert got["slerp"].constituents == "pairs" and got["slerp"].base == "first"


@pytest.mark.parametrize("change, field, says", [
    ({"merge_method": "my_method"}, "-", "not a mergekit built-in"),
    ({"module": "../evil.py"}, "module", "no absolute path"),
    ({"parameters": {"t": []}}, "parameters", "1 to 16 values"),
    ({"parameters": {"bad name": 1.0}}, "parameters", "Python identifier"),
    ({"id": "Bad Id"}, "id", "a-z, 0-9"),
    ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ({"authors": []}, "authors", "at least 1"),
])
def test_bad_spec_is_one_line_naming_file_and_field(tmp_path, change, field, says):
    data = {"id": "x1", "title": "A method", "authors": ["me"], "merge_method": "ties", **change}
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(data))
    spec, problems = methods.load_spec(f)
    assert spec is None and len(problems) == 1
    line = problems[0]
    assert line.startswith(f"{f}: {field}") and says in line and "\n" not in line and ";" in line


def test_grid_sample_choose():
    spec = schema.MethodSpec(id="g1", title="grid", authors=["a"], merge_method="della", parameters={"lambda": [0.5, 1.0]},
                             model_parameters={"weight": 1.0, "density": [0.3, 0.5, 0.7]})
    pts = methods.grid(spec)
    assert len(pts) == 6 and pts[0] == ({"lambda": 0.5}, {"weight": 1.0, "density": 0.3})
    assert len({yaml.safe_dump(p) for p in pts}) == 6
    s = methods.sample(6, 1234)
    assert len(s) == methods.TUNE_BUDGET and s == sorted(s) and s == methods.sample(6, 1234)
    assert methods.sample(3, 1234) == [0, 1, 2]
    assert methods.choose([None, 2.0, 5.0, 5.0]) == 2
    assert methods.choose([None, float("nan")]) == 0


def test_recipe_per_base_rule():
    by = {s.id: s for s in scenarios.scenarios()}
    slerp = methods.spec_or_raise(methods.SPECS_DIR / "slerp.yaml")
    r = methods.recipe(slerp, by["mt-fr-es"], {"t": 0.3}, {})
    assert r["base_model"] == "family:babel-mini/mt-en-fr" and r["parameters"] == {"t": 0.3}
    assert [m["model"] for m in r["models"]] == ["family:babel-mini/mt-en-fr", "family:babel-mini/mt-en-es"]
    assert not methods.applies(slerp, by["mt-all"]) and methods.applies(slerp, by["mt-fr-es"])
    ties = methods.spec_or_raise(methods.SPECS_DIR / "ties.yaml")
    r = methods.recipe(ties, by["mono-all"], {}, {"weight": 1.0, "density": 0.5})
    assert r["base_model"] == "family:babel-mini/init-s0" and len(r["models"]) == 7
    assert r["models"][0]["parameters"] == {"weight": 1.0, "density": 0.5}
    lin = methods.spec_or_raise(methods.SPECS_DIR / "linear.yaml")
    assert "base_model" not in methods.recipe(lin, by["cpt-all"], {}, {"weight": 1.0})


def test_dev_variant_scores_the_dev_split():
    suite = load_suite()
    dev = dev_variant(suite)
    assert dev["id"] == "babel-mini-v2-dev" and dev["sha256"] != suite["sha256"]
    assert dev["tasks"]["lm"]["split"] == dev["tasks"]["mt"]["split"] == "dev"
    assert suite["tasks"]["lm"]["split"] == "test" and dev["tasks"]["mt"]["n"] == suite["tasks"]["mt"]["n"]


def test_module_is_never_loaded_from_submissions(tmp_path, monkeypatch):
    sub = tmp_path / "submissions" / "x1"
    sub.mkdir(parents=True)
    (sub / "m.py").write_text("raise SystemExit('must not run')\n")
    (sub / "spec.yaml").write_text(yaml.safe_dump({"id": "x1", "title": "A method", "authors": ["me"],
                                                   "merge_method": "mine", "module": "m.py"}))
    monkeypatch.setattr(methods, "SUBMISSIONS_DIR", tmp_path / "submissions")
    spec = methods.spec_or_raise(sub / "spec.yaml")
    with pytest.raises(methods.MethodError, match="never loaded from submissions"):
        methods.register_module(spec, sub / "spec.yaml")


def test_module_that_registers_nothing_is_one_line(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"id": "x2", "title": "A method", "authors": ["me"],
                                                        "merge_method": "not_registered_here", "module": "m.py"}))
    spec = methods.spec_or_raise(tmp_path / "spec.yaml")
    with pytest.raises(methods.MethodError, match="merge_method: 'not_registered_here' is not registered by m.py"):
        methods.register_module(spec, tmp_path / "spec.yaml")


def test_example_method_registers_with_mergekit_and_merges(tmp_path, tiny_models):
    """The example module's method through mergekit and our bridge equals the rule computed here in numpy, and
    its merge identity carries the module's hash."""
    from safetensors.numpy import load_file

    from harness.merge import run_recipe

    spec = methods.spec_or_raise(EXAMPLE)
    extra = methods.register_module(spec, EXAMPLE)
    assert extra == methods.register_module(spec, EXAMPLE)  # imported once per process, registered once
    base, a, b = tiny_models
    rec = {"merge_method": "sign_agree_mean", "dtype": "float32", "base_model": str(base),
           "models": [{"model": str(a)}, {"model": str(b)}], "parameters": {"scale": 1.5}}
    f = tmp_path / "recipe.yml"
    f.write_text(yaml.safe_dump(rec))
    out, prov = run_recipe(f, preset="micro", seed=0, log=lambda *_: None, allow_local=True, extra_identity=extra)
    plain, _ = run_recipe(f, preset="micro", seed=0, log=lambda *_: None, allow_local=True)
    assert prov["extra_identity"] == extra and out != plain  # the module's hash is part of the identity
    got = load_file(str(out / "model.safetensors"))
    w = [load_file(str(m / "model.safetensors")) for m in (base, a, b)]
    for name, t in got.items():
        da, db = (w[1][name].astype(np.float64) - w[0][name]), (w[2][name].astype(np.float64) - w[0][name])
        agree = np.sign(da) * np.sign(db) >= 0
        want = w[0][name] + 1.5 * np.where(agree, (da + db) / 2, 0.0)
        assert np.allclose(t, want, atol=1e-5), name
        assert (agree.mean() < 1.0) or name.endswith("norm.weight")  # the rule bites on random task vectors


# -- kind: method submissions (issue 15.6) ---------------------------------------------------------------
REF_ = "family:babel-mini/"
METHOD_SUB = {"schema_version": 1, "id": "my-method", "title": "My TIES variant", "authors": ["Ada"],
              "contact": "ada@example.org", "method": "my-ties", "kind": "method", "method_spec": "method.yaml",
              "license": "CC-BY-4.0"}


def _method_folder(tmp_path, manifest, spec=None):
    from harness.validation import validate_folder

    d = tmp_path / manifest["id"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "submission.yaml").write_text(yaml.safe_dump(manifest))
    if spec is not None:
        (d / "method.yaml").write_text(yaml.safe_dump(spec))
    return d, validate_folder(d, members=set())


def test_method_submission_with_a_builtin_grid_is_valid(tmp_path):
    spec = {"id": "my-ties", "title": "TIES, wider grid", "authors": ["Ada"], "merge_method": "ties",
            "model_parameters": {"weight": [0.5, 1.0], "density": [0.1, 0.3]}}
    _, problems = _method_folder(tmp_path, METHOD_SUB, spec)
    assert problems == []


@pytest.mark.parametrize("manifest, spec, field, says", [
    (METHOD_SUB, {"id": "m1", "title": "Mine", "authors": ["A"], "merge_method": "evil", "module": "evil.py"},
     "module", "never carries code"),
    (METHOD_SUB, {"id": "m1", "title": "Mine", "authors": ["A"], "merge_method": "evil"}, "-", "not a mergekit built-in"),
    ({**METHOD_SUB, "method_spec": "../outside.yaml"}, None, "method_spec", "leaves the submission folder"),
    ({**METHOD_SUB, "constituents": [REF_ + "mono-en"]}, None, "-", "lists no `constituents`"),
    ({**{k: v for k, v in METHOD_SUB.items() if k != "method_spec"}}, None, "-", "exactly one of"),
    ({**METHOD_SUB, "method_spec": None, "checkpoints": {"mono-en-de": {"path": "m", "sha256": {"model.safetensors": "0" * 64}}}},
     None, "checkpoints", "54 of the 55 scenarios"),
])
def test_bad_method_submission_is_one_line(tmp_path, manifest, spec, field, says):
    manifest = {k: v for k, v in manifest.items() if v is not None}
    d, problems = _method_folder(tmp_path, manifest, spec)
    assert problems and any(says in p for p in problems), problems
    hit = next(p for p in problems if says in p)
    assert f": {field}" in hit and ";" in hit and "\n" not in hit


def test_method_submission_is_not_a_model_of_the_run(tmp_path):
    """The gate lets a valid kind: method through, and the model stages do not plan it as a model."""
    from harness.pipeline import Context

    spec = {"id": "my-ties", "title": "TIES, wider grid", "authors": ["Ada"], "merge_method": "ties",
            "model_parameters": {"weight": 1.0, "density": [0.1, 0.3]}}
    _method_folder(tmp_path / "subs", METHOD_SUB, spec)
    ctx = Context(submissions_dir=tmp_path / "subs", references_dir=tmp_path / "refs", log=lambda *_: None)
    assert ctx.subs() == [] and ctx.refused == []



def test_record_reuse_and_row_line(tmp_path):
    """A stored record is reused only for the same spec hash, suites, preset and limit; the row line averages the
    scored scenarios and breaks them down by category."""
    from harness import methodbench, store

    def rec(scenario, category, score, limit=None):
        return schema.MethodScenarioFile(
            method="m", spec_sha256="a" * 64, scenario=scenario, scenario_set="s", group="g", category=category,
            constituents=["mono-en", "mono-ru"], base="init-s0", suite="babel-mini-v2", suite_sha256="b" * 64,
            dev_suite_sha256="c" * 64, preset="micro", limit=limit, tuning={}, points=[], tasks=["lm:en"], live=[],
            score=score, provenance={})

    f = tmp_path / "method.json"
    store.write_json(f, rec("x", "monolingual pairs", 40.0, limit=4).model_dump(mode="json"))
    want = {"spec_sha256": "a" * 64, "suite_sha256": "b" * 64, "preset": "micro", "limit": 4,
            "constituents": ["mono-en", "mono-ru"]}
    assert methodbench.record_current(f, want) is not None
    assert methodbench.record_current(f, {**want, "limit": None}) is None
    assert methodbench.record_current(f, {**want, "spec_sha256": "d" * 64}) is None
    line = methodbench.row_line("m", [rec("x", "a", 40.0), rec("y", "a", 60.0), rec("z", "b", 20.0), rec("w", "b", None)])
    assert "mean normalized score 40.0 over 3 scenario(s)" in line and "a 50.0 (n=2)" in line and "b 20.0 (n=1)" in line
