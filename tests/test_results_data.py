"""The repository's data: every committed results file says which committed code produced it (a git hash that
is in this checkout's history, never '-dirty', never written with --allow-dirty)."""

import json
import subprocess
from pathlib import Path

import pytest

from harness.provenance import in_history

REPO = Path(__file__).resolve().parent.parent


def committed_results() -> list[Path]:
    """Tracked JSON files under references/ and submissions/ that record a git hash in their provenance."""
    try:
        out = subprocess.run(["git", "ls-files", "references", "submissions"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed results cannot be listed")
    files = []
    for name in out:
        if name.endswith(".json") and not name.endswith(".docs.json"):
            prov = json.loads((REPO / name).read_text(encoding="utf-8")).get("provenance")
            if isinstance(prov, dict) and "git" in prov:
                files.append(REPO / name)
    return files


def test_every_committed_result_names_a_clean_commit_in_history():
    files = committed_results()
    bad = []
    commits: dict[str, bool] = {}
    for f in files:
        prov = json.loads(f.read_text(encoding="utf-8"))["provenance"]
        git = prov["git"]
        if git.endswith("-dirty") or prov.get("dirty"):
            bad.append(f"{f.relative_to(REPO)}: provenance.git: {git} was written from uncommitted code; "
                       "regenerate it from a clean commit")
            continue
        if git not in commits:
            commits[git] = len(git) == 40 and in_history(git)
        if not commits[git]:
            bad.append(f"{f.relative_to(REPO)}: provenance.git: {git} is not a commit in this history; "
                       "regenerate it from a commit of this branch")
    assert not bad, f"{len(bad)} of {len(files)} committed results files:\n" + "\n".join(bad[:20])


def test_publishing_from_uncommitted_code_is_refused_unless_allowed(monkeypatch, tmp_path):
    from harness import pipeline, provenance

    monkeypatch.setattr(provenance, "code_dirty", lambda: True)
    target = REPO / "submissions" / "some-merge" / "results" / "babel-mini-v2.json"
    with pytest.raises(pipeline.DirtyTree, match="--allow-dirty"):
        pipeline.guard(pipeline.Context(log=lambda *_: None), target)
    assert pipeline.guard(pipeline.Context(log=lambda *_: None, allow_dirty=True), target) is True
    assert pipeline.guard(pipeline.Context(log=lambda *_: None), tmp_path / "results.json") is False
    monkeypatch.setattr(provenance, "code_dirty", lambda: False)
    assert pipeline.guard(pipeline.Context(log=lambda *_: None), target) is False
