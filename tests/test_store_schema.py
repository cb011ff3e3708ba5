"""Atomic writes, content hashes and strict schemas."""

import json
import os

import pytest
from pydantic import ValidationError

from harness import schema, store


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    f = tmp_path / "r.json"
    store.write_json(f, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_json(f, {"a": 2})
    assert json.loads(f.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_sha256_obj_is_key_order_independent():
    assert store.sha256_obj({"a": 1, "b": [1, 2]}) == store.sha256_obj({"b": [1, 2], "a": 1})
    assert store.sha256_obj({"a": 1}) != store.sha256_obj({"a": 2})


def test_result_row_refuses_unknown_fields():
    ok = dict(task="lm:en", language="en", metric="bits_per_byte", value=1.0, n=3, higher_is_better=False)
    schema.ResultRow(**ok)
    with pytest.raises(ValidationError):
        schema.ResultRow(**ok, rank=1)


def test_submission_id_rules():
    base = dict(title="tiny", authors=["a"], contact="a@example.org", license="MIT", method="linear", kind="recipe",
                recipe="recipe.yml", constituents=["family:babel-mini/mono-en"])
    schema.Submission(id="ref-linear-x", **base)
    for bad in ("Has Space", "../up", "a", "-lead"):
        with pytest.raises(ValidationError):
            schema.Submission(id=bad, **base)


def test_submission_loader_one_line_errors(tmp_path):
    from harness.submissions import SubmissionError, load

    d = tmp_path / "my-sub"
    d.mkdir()
    with pytest.raises(SubmissionError, match=r"submission.yaml: -: file missing"):
        load(d)
    common = ("title: tiny\nauthors: [a]\ncontact: a@example.org\nlicense: MIT\nmethod: linear\nkind: recipe\n"
              "constituents: [family:babel-mini/mono-en]\nrecipe: recipe.yml\n")
    (d / "submission.yaml").write_text("id: other-id\n" + common)
    with pytest.raises(SubmissionError, match=r"id: 'other-id' differs from the folder name"):
        load(d)
    (d / "submission.yaml").write_text("id: my-sub\n" + common + "colour: red\n")
    with pytest.raises(SubmissionError, match=r"colour: Extra inputs are not permitted"):
        load(d)


def test_repo_submissions_validate():
    """Every committed submission validates and its id matches its folder."""
    from harness.submissions import SUBMISSIONS_DIR, discover

    subs = discover(SUBMISSIONS_DIR)
    assert len(subs) >= 40
    assert all(s.id == s.folder.name for s in subs)


def test_committed_grid_matches_generator(tmp_path):
    """The reference submissions in the repo are exactly what `babelmerge grid` writes."""
    from harness.grid import write_grid
    from harness.submissions import SUBMISSIONS_DIR

    for d in write_grid(tmp_path):
        for name in ("submission.yaml", "recipe.yml"):
            assert (d / name).read_text() == (SUBMISSIONS_DIR / d.name / name).read_text(), f"{d.name}/{name} is stale"


def test_grid_has_power_sets():
    """Issue 12.3: at least 40 distinct constituent sets, each merged with linear, task arithmetic and TIES; every
    monolingual pair, every translation pair and the cross-initialisation pairs are among them."""
    from itertools import combinations

    from harness.corpus import LANGUAGES
    from harness.family.build import TARGETS
    from harness.grid import constituent_sets, reference_grid

    grid = reference_grid()
    methods: dict[frozenset, set] = {}
    for r in grid:
        methods.setdefault(frozenset(r["constituents"]), set()).add(r["method"])
    sets = [frozenset(c) for _, _, c, _ in constituent_sets()]
    assert len(set(sets)) == len(sets) >= 40
    for s in sets:
        assert {"linear", "task_arithmetic", "ties"} <= methods[s], sorted(s)
    for a, b in combinations(LANGUAGES, 2):
        assert frozenset({f"mono-{a}", f"mono-{b}"}) in methods
    for a, b in combinations(TARGETS, 2):
        assert frozenset({f"mt-en-{a}", f"mt-en-{b}"}) in methods
    assert frozenset({"mono-en", "mono-ru-s1"}) in methods and frozenset({"mono-en-s1", "mono-ru-s1"}) in methods
    assert len({r["id"] for r in grid}) == len(grid)
