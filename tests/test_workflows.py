"""The repository's CI: the pull-request workflow validates exactly the submission folders a pull request
changes (its command run here in a temporary git repository), and the Pages workflow publishes the site built
from committed results."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WF = REPO / ".github" / "workflows"


def _load(name: str) -> dict:
    wf = yaml.safe_load((WF / name).read_text(encoding="utf-8"))
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def _runs(wf: dict) -> list[str]:
    return [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]


def _uses(wf: dict) -> list[str]:
    return [s.get("uses", "").split("@")[0] for job in wf["jobs"].values() for s in job["steps"]]


def test_validate_workflow_structure():
    wf = _load("validate.yml")
    assert "pull_request" in wf["on"] and wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert any("scripts/setup.sh" in r for r in _runs(wf))
    step = next(s for s in job["steps"] if "validate-changed.sh" in s.get("run", ""))
    assert "github.base_ref" in step["run"] and step["env"]["BABELMERGE"].endswith("babelmerge")


def test_pages_workflow_structure():
    wf = _load("pages.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert any("babelmerge site build --out site/_build" in r for r in _runs(wf))
    uses = _uses(wf)
    assert {"actions/checkout", "actions/upload-pages-artifact", "actions/deploy-pages"} <= set(uses)
    upload = next(s for j in wf["jobs"].values() for s in j["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "site/_build"
    assert wf["jobs"]["deploy"]["needs"] == "build" and wf["jobs"]["deploy"]["environment"]["name"] == "github-pages"


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def test_validate_step_on_a_pull_request(tmp_path):
    """A base branch with two submissions; a pull request edits one, adds a broken one, deletes none and touches
    the README: the step validates exactly the edited and the added folder and fails on the broken one."""
    repo = tmp_path / "repo"
    (repo / "submissions").mkdir(parents=True)
    for s in ("ref-linear-mono-en-ru", "ref-slerp-mt-fr-es"):
        shutil.copytree(REPO / "submissions" / s, repo / "submissions" / s, ignore=shutil.ignore_patterns("results"))
    (repo / "submissions" / "README.md").write_text("submissions\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "checkout", "-qb", "pr")
    y = repo / "submissions" / "ref-slerp-mt-fr-es" / "submission.yaml"
    y.write_text(y.read_text().replace("title: SLERP", "title: Spherical SLERP"))
    bad = repo / "submissions" / "my-broken"
    bad.mkdir()
    (bad / "submission.yaml").write_text("schema_version: 1\nid: my-broken\n")
    (repo / "submissions" / "README.md").write_text("submissions, edited\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "pr")

    changed = subprocess.run(["bash", str(REPO / "scripts" / "changed-submissions.sh"), "main"], cwd=repo,
                             capture_output=True, text=True, check=True).stdout.split()
    assert changed == ["submissions/my-broken", "submissions/ref-slerp-mt-fr-es"]

    summary = tmp_path / "summary.md"
    env = {**os.environ, "BABELMERGE": f"{sys.executable} -m harness.cli", "PYTHONPATH": str(REPO),
           "GITHUB_STEP_SUMMARY": str(summary)}
    out = subprocess.run(["bash", str(REPO / "scripts" / "validate-changed.sh"), "main"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [l for l in out.stdout.splitlines() if l.startswith("::error file=")]
    assert errors and all("my-broken" in l for l in errors), out.stdout
    assert "2 submission(s) checked" in out.stdout and "2 submission(s) checked" in summary.read_text()

    _git(repo, "checkout", "-q", "main")  # nothing changed against itself: nothing to validate, success
    out = subprocess.run(["bash", str(REPO / "scripts" / "validate-changed.sh"), "main"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "no submission folder changed" in out.stdout
