"""Offline, pinned evaluation data in its public Hugging Face layout (FLORES+, NLLB Team et al. 2022 and the OLDI
release; Belebele, Bandarkar et al., ACL 2024): locating files under `--data DIR`, FLORES code renames, reading
parquet or JSON lines, the sha256 of every file read, and the lock file that pins those hashes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import store

ENV = "BABELMERGE_DATA"
LOCK_FORMAT = 1

# Where each data set comes from. The revisions could not be checked from this machine (no hub access); a
# suite YAML may pin one (`data.<name>.revision`), `babelmerge data fetch` needs one, and the lock file records
# the hashes of the bytes actually read, which is what a result is tied to.
SOURCES = {
    "flores_plus": {"repo": "openlanguagedata/flores_plus", "columns": ("id", "iso_639_3", "iso_15924", "text")},
    "belebele": {"repo": "facebook/belebele", "columns": ("flores_passage", "question", "mc_answer1", "mc_answer2",
                                                          "mc_answer3", "mc_answer4", "correct_answer_num")},
}

# FLORES codes renamed between releases (FLORES-200 -> FLORES+): either spelling finds the file. Belebele kept the
# FLORES-200 names. Keys and values are tried both ways.
RENAMES = {"zho_Hans": "cmn_Hans", "zho_Hant": "cmn_Hant"}
_ALIASES = {**RENAMES, **{v: k for k, v in RENAMES.items()}}


class DataError(ValueError):
    """Bad or missing evaluation data: one line naming the file, what is wrong and the fix."""


def aliases(code: str) -> list[str]:
    """The spellings under which a FLORES language code may be stored, the requested one first."""
    return [code] + ([_ALIASES[code]] if code in _ALIASES else [])


def data_root(arg: str | Path | None) -> Path:
    """`--data DIR`, else $BABELMERGE_DATA; one line when neither names a folder."""
    value = arg if arg not in (None, "") else os.environ.get(ENV)
    if not value:
        raise DataError(f"this suite reads local data: pass --data DIR (or set {ENV}) naming a folder that holds "
                        "flores_plus/ and belebele/ as their Hugging Face repositories ship them (README: Real models)")
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: --data must name a folder holding flores_plus/ and belebele/; it does not exist")
    return root


def parse_languages(arg: str | None, suite_languages: list[str]) -> list[str]:
    """`--languages deu_Latn,fra_Latn` (FLORES codes) -> the subset, in the suite's order; None -> all of them."""
    if not arg:
        return list(suite_languages)
    wanted = [c.strip() for c in arg.split(",") if c.strip()]
    known = {a: c for c in suite_languages for a in aliases(c)}
    bad = [c for c in wanted if c not in known]
    if bad:
        raise DataError(f"--languages: {bad[0]} is not a language of this suite; choose from {','.join(suite_languages)}")
    chosen = {known[c] for c in wanted}
    return [c for c in suite_languages if c in chosen]


def candidates(dataset: str, code: str, split: str | None = None) -> list[str]:
    """The relative paths a language's file may have, in the order they are tried."""
    if dataset == "flores_plus":
        return [f"flores_plus/{split}/{c}.{ext}" for c in aliases(code) for ext in ("parquet", "jsonl")]
    if dataset == "belebele":
        return [f"belebele/data/{c}.jsonl" for c in aliases(code)]
    raise KeyError(f"unknown data set '{dataset}'; choose one of {', '.join(SOURCES)}")


def read_rows(path: Path) -> list[dict]:
    """The rows of a parquet or JSON-lines file, as dicts."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}); download it again") from None
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {i} is not JSON; the file must hold one JSON object per line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {i} is not a JSON object; the file must hold one object per line")
            rows.append(row)
    return rows


@dataclass
class DataDir:
    """A data folder as one run reads it: every file read is hashed once, and checked against the lock when one
    exists. `read` maps the relative path of each file read to its sha256 (the results' provenance)."""

    root: Path
    revisions: dict = field(default_factory=dict)      # data set -> pinned revision (None: not pinned)
    lock: dict | None = None                            # the lock file's contents, when one exists
    lock_path: Path | None = None
    read: dict = field(default_factory=dict)            # relative path -> sha256 of the bytes read
    _rows: dict = field(default_factory=dict, repr=False)

    def locate(self, dataset: str, code: str, split: str | None = None) -> Path:
        tried = candidates(dataset, code, split)
        for rel in tried:
            if (self.root / rel).is_file():
                return self.root / rel
        src, rev = SOURCES[dataset]["repo"], self.revisions.get(dataset)
        where = f"https://huggingface.co/datasets/{src}" + (f" at revision {rev}" if rev else " (revision not pinned)")
        raise DataError(f"{self.root / tried[0]}: missing; it is {tried[0].split('/', 1)[1]} of {where}: put that file "
                        f"there (or {tried[1] if len(tried) > 1 else tried[0]}), or run `babelmerge data fetch` online")

    def rows(self, dataset: str, code: str, split: str | None = None) -> list[dict]:
        """A language's rows (cached), after checking its columns and its hash against the lock."""
        path = self.locate(dataset, code, split)
        rel = path.relative_to(self.root).as_posix()
        if rel not in self._rows:
            sha = store.sha256_file(path)
            self.check_lock(rel, sha)
            rows = read_rows(path)
            if not rows:
                raise DataError(f"{path}: holds no rows; download it again")
            for col in SOURCES[dataset]["columns"]:
                if col not in rows[0]:
                    raise DataError(f"{path}: no column '{col}'; the file must keep {SOURCES[dataset]['repo']}'s columns "
                                    f"({', '.join(SOURCES[dataset]['columns'])})")
            self.read[rel] = sha
            self._rows[rel] = rows
        return self._rows[rel]

    def check_lock(self, rel: str, sha: str) -> None:
        if self.lock is None:
            return
        want = self.lock["files"].get(rel)
        if want is None:
            raise DataError(f"{self.root / rel}: not in the lock {self.lock_path}; lock it with `babelmerge data lock` "
                            "(covering these languages), or remove the lock")
        if want != sha:
            raise DataError(f"{self.root / rel}: sha256 {sha[:12]} differs from {want[:12]} in the lock {self.lock_path}; "
                            "restore the locked file, or re-lock with `babelmerge data lock` if the change is intended")

    def provenance(self) -> dict:
        """What the results record about their data: every file read with its sha256, the revisions, the lock."""
        return {"files": dict(sorted(self.read.items())), "revisions": self.revisions,
                "lock_sha256": store.sha256_file(self.lock_path) if self.lock_path and self.lock is not None else None}


def lock_path(suite: dict) -> Path:
    """Where a suite's lock lives: beside its YAML, `<suite>.lock.json` (commit it to pin the data for everyone)."""
    return Path(suite["path"]).with_name(f"{suite['id']}.lock.json")


def read_lock(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise DataError(f"{path}: not JSON; delete it and run `babelmerge data lock` again") from None
    if not isinstance(lock, dict) or lock.get("format") != LOCK_FORMAT or not isinstance(lock.get("files"), dict):
        raise DataError(f"{path}: not a lock of format {LOCK_FORMAT} (field 'files' missing); run `babelmerge data lock` again")
    return lock


def open_data(suite: dict, arg: str | Path | None) -> DataDir:
    """The data folder of a suite that reads local data, with its lock when one exists."""
    lp = lock_path(suite)
    revisions = {name: (suite["data"].get(name) or {}).get("revision") for name in suite["data"]["sets"]}
    return DataDir(data_root(arg), revisions=revisions, lock=read_lock(lp), lock_path=lp)


def files_of(suite: dict, languages: list[str]) -> list[tuple[str, str, str | None]]:
    """(data set, language, split) of every file the suite reads for these languages."""
    out = []
    for name in suite["data"]["sets"]:
        splits = suite["data"][name].get("splits") or [None]
        out += [(name, lang, split) for lang in languages for split in splits]
    return out


def write_lock(suite: dict, data: DataDir, languages: list[str]) -> Path:
    """Hash every file the suite reads for these languages (all must exist) and write the lock beside the suite."""
    data.lock = None  # hash what is there now
    for name, lang, split in files_of(suite, languages):
        data.rows(name, lang, split)
    path = lock_path(suite)
    store.write_json(path, {"format": LOCK_FORMAT, "suite": suite["id"], "revisions": data.revisions,
                            "repos": {n: SOURCES[n]["repo"] for n in suite["data"]["sets"]},
                            "files": dict(sorted(data.read.items()))})
    return path


def fetch(suite: dict, root: Path, languages: list[str], revision: dict[str, str]) -> list[Path]:
    """Download the suite's files for these languages at pinned revisions with huggingface_hub (online only; only
    `babelmerge data fetch` calls this). Files land in the public layout under root."""
    from huggingface_hub import hf_hub_download

    got = []
    for name, lang, split in files_of(suite, languages):
        rev = revision.get(name)
        if not rev or len(rev) != 40:
            raise DataError(f"data fetch: {name} has no pinned revision; pass --revision {name}=<40-hex commit> or pin "
                            f"data.{name}.revision in the suite")
        last = None
        for rel in candidates(name, lang, split):
            try:
                p = hf_hub_download(SOURCES[name]["repo"], rel.split("/", 1)[1], repo_type="dataset", revision=rev,
                                    local_dir=root / name)
                got.append(Path(p))
                break
            except Exception as e:  # not found under this spelling: try the next one
                last = e
        else:
            raise DataError(f"data fetch: {SOURCES[name]['repo']}@{rev} has no {candidates(name, lang, split)[0]} "
                            f"({type(last).__name__}); check the language code and revision")
    return got
