"""The site build's incremental cache: statistics stored under the sha256 of their inputs (and of the code that
computes them), and the key every output file was produced from, kept beside the build, so that an output whose
key is unchanged is hard-linked from the previous build instead of rendered again (content-addressed
memoisation, as in build systems such as Bazel or Nix: a result is named by what it was computed from)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Callable

import pandas as pd

from . import store

ROOT = Path(__file__).resolve().parent
KEYS = ".build-keys.json"   # in the build folder: relative output path -> the key it was produced from
KEEP = 4                    # statistics pickles kept per name (newest first); older ones are removed


def digest(*parts) -> str:
    """sha256 over the parts in order (str, bytes, or anything canonical_json takes), each part delimited."""
    h = hashlib.sha256()
    for p in parts:
        b = p if isinstance(p, bytes) else p.encode("utf-8") if isinstance(p, str) else store.canonical_json(p).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def frame_digest(df: pd.DataFrame) -> str:
    """Content hash of a frame: its columns, dtypes and pandas' per-row hash of values and index."""
    if df.empty:
        return digest("empty", list(map(str, df.columns)))
    try:
        rows = pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes()
    except TypeError:  # a column of unhashable cells (lists, dicts): hash its CSV form instead
        rows = df.to_csv().encode("utf-8")
    return digest(list(map(str, df.columns)), [str(t) for t in df.dtypes], rows)


def code_digest(*names: str) -> str:
    """sha256 of the named source files (relative to harness/; a folder means every file under it): a change to
    the code that computes a cached value makes a new key, so no stale result is ever reused."""
    files = []
    for n in names:
        p = ROOT / n
        files += sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts) if p.is_dir() else [p]
    return digest(*[f.read_bytes() for f in files])


def cached(folder: Path, name: str, key: str, compute: Callable[[], object], log=None):
    """compute() once per key: its value is pickled at folder/name-key.pkl and read back when the key recurs.
    Returns (value, hit)."""
    path = folder / f"{name}-{key}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f), True
    value = compute()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    old = sorted(folder.glob(f"{name}-*.pkl"), key=lambda q: q.stat().st_mtime, reverse=True)[KEEP:]
    for q in old:
        q.unlink(missing_ok=True)
    return value, False


class Outputs:
    """Writes the files of a new build folder: a file whose key matches the previous build's is hard-linked from
    it (copied where links are not possible), any other is produced. `keys` is saved with the new build."""

    def __init__(self, old: Path, new: Path):
        self.old, self.new = old, new
        try:
            self.old_keys = json.loads((old / KEYS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.old_keys = {}
        self.keys: dict[str, str] = {}
        self.reused = 0
        self.made = 0

    def child(self) -> "Outputs":
        """An Outputs over the same folders and previous keys with nothing recorded yet (for a worker)."""
        c = Outputs.__new__(Outputs)
        c.old, c.new, c.old_keys, c.keys, c.reused, c.made = self.old, self.new, self.old_keys, {}, 0, 0
        return c

    def reuse(self, rel: str, key: str) -> bool:
        """Link rel from the previous build when it was produced from the same key; True when done."""
        self.keys[rel] = key
        src = self.old / rel
        if self.old_keys.get(rel) != key or not src.is_file():
            return False
        dst = self.new / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            import shutil

            shutil.copy2(src, dst)
        self.reused += 1
        return True

    def text(self, rel: str, key: str, produce: Callable[[], str]) -> None:
        """rel holds produce()'s text, made only when key is new."""
        if not self.reuse(rel, key):
            (self.new / rel).write_text(produce(), encoding="utf-8")
            self.made += 1

    def file(self, rel: str, key: str, write: Callable[[Path], None]) -> None:
        """rel is written by write(path), called only when key is new."""
        if not self.reuse(rel, key):
            write(self.new / rel)
            self.made += 1

    def merge(self, keys: dict[str, str], reused: int, made: int) -> None:
        """Take in what a worker process produced."""
        self.keys.update(keys)
        self.reused += reused
        self.made += made

    def save(self) -> None:
        (self.new / KEYS).write_text(json.dumps(self.keys, sort_keys=True), encoding="utf-8")
