"""Loading submissions (submissions/<id>/submission.yaml) and stored results, with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import schema, store

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS_DIR = REPO / "submissions"
REFERENCES_DIR = REPO / "references"


class SubmissionError(Exception):
    """One line: `file: field: what is wrong; what to do`."""


@dataclass(frozen=True)
class Loaded:
    folder: Path
    manifest: schema.Submission

    @property
    def id(self) -> str:
        return self.manifest.id

    def results_path(self, name: str) -> Path:
        return self.folder / "results" / name


def load(folder: Path) -> Loaded:
    """A submission whose manifest is valid (the first problem is raised as one line otherwise)."""
    from .validation import read_manifest

    m, problems = read_manifest(folder)
    if problems:
        raise SubmissionError(problems[0])
    if m.kind == "recipe" and not (folder / m.recipe).is_file():
        raise SubmissionError(f"{folder / 'submission.yaml'}: recipe: recipe file '{m.recipe}' is missing; "
                              "add recipe.yml beside submission.yaml")
    return Loaded(folder, m)


def discover(root: Path = SUBMISSIONS_DIR) -> list[Loaded]:
    """Every submission folder under root, sorted by id (folders starting with '.' or '_' are skipped)."""
    return [load(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))]


def read_results(path: Path) -> schema.ResultsFile:
    return schema.ResultsFile.model_validate(store.read_json(path))


def all_results(name: str, submissions_dir: Path = SUBMISSIONS_DIR, references_dir: Path = REFERENCES_DIR) -> list[schema.ResultsFile]:
    """Every stored results file for one results name (e.g. babel-mini-v1.json), references first."""
    files = sorted(references_dir.glob(f"*/*/results/{name}")) + sorted(submissions_dir.glob(f"*/results/{name}"))
    return [read_results(f) for f in files]
