"""Loading submissions (submissions/<id>/submission.yaml) through the one gate every command uses, and their
stored results, with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import schema, store
from .safety import escape

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS_DIR = REPO / "submissions"
REFERENCES_DIR = REPO / "references"


class SubmissionError(Exception):
    """One line: `file: field: what is wrong; what to do` (escaped)."""

    def __init__(self, line: str):
        super().__init__(escape(line))


@dataclass(frozen=True)
class Loaded:
    folder: Path
    manifest: schema.Submission

    @property
    def id(self) -> str:
        return self.manifest.id

    def results_path(self, name: str) -> Path:
        return self.folder / "results" / name


@dataclass(frozen=True)
class Gate:
    """What the gate let through, and the problem lines of each refused folder (nothing else of it is read)."""

    accepted: list[Loaded] = field(default_factory=list)
    refused: dict[Path, list[str]] = field(default_factory=dict)

    @property
    def lines(self) -> list[str]:
        return [p for lines in self.refused.values() for p in lines]


def folders(root: Path = SUBMISSIONS_DIR) -> list[Path]:
    """The candidate submission folders under root, sorted: every entry that is a folder or a symbolic link
    (a link is refused by the gate, not skipped), except names starting with '.' or '_'."""
    return sorted(d for d in root.iterdir() if not d.name.startswith((".", "_")) and (d.is_symlink() or d.is_dir()))


def gate(root: Path = SUBMISSIONS_DIR, only: list[str] | None = None) -> Gate:
    """Run `babelmerge validate`'s full checks (manifest, references, recipe, checkpoint) on every submission
    folder under root (or only the named ones): the valid ones come back loaded, the others as their lines."""
    from .validation import check_folder, family_members

    found = folders(root)
    if only is not None:
        names = {d.name for d in found}
        found = [d for d in found if d.name in only]
        missing = [root / n for n in only if n not in names]
    else:
        missing = []
    g = Gate(refused={d: [escape(f"{d}: -: no such submission folder; give the name of a folder under {root}")]
                      for d in missing})
    members = family_members()
    for d in found:
        m, problems = check_folder(d, members)
        if problems:
            g.refused[d] = problems
        else:
            g.accepted.append(Loaded(d, m))
    return g


def load(folder: Path) -> Loaded:
    """One submission that passes the gate (its first problem is raised as one line otherwise)."""
    from .validation import check_folder

    m, problems = check_folder(folder)
    if problems:
        raise SubmissionError(problems[0])
    return Loaded(folder, m)


def discover(root: Path = SUBMISSIONS_DIR) -> list[Loaded]:
    """Every submission under root, through the gate; the first problem of a refused one is raised as one line."""
    g = gate(root)
    if g.refused:
        raise SubmissionError(g.lines[0])
    return g.accepted


def read_results(path: Path) -> schema.ResultsFile:
    return schema.ResultsFile.model_validate(store.read_json(path))


def results_paths(name: str, subs: list[Loaded], references_dir: Path = REFERENCES_DIR) -> list[Path]:
    """Where every stored results file for one results name (e.g. babel-mini-v2.json) lies: the references', then
    those of the given submissions (the ones the gate let through); nothing of any other folder is listed."""
    return sorted(references_dir.glob(f"*/*/results/{name}")) + [
        p for p in (s.results_path(name) for s in sorted(subs, key=lambda s: s.id)) if p.exists()]


def all_results(name: str, subs: list[Loaded], references_dir: Path = REFERENCES_DIR) -> list[schema.ResultsFile]:
    """Every stored results file of results_paths, read and validated."""
    return [read_results(f) for f in results_paths(name, subs, references_dir)]
