"""The site build's incremental cache: statistics stored under the sha256 of their inputs (and of the code that
computes them), per-model pieces (tidy rows, leaderboard cells) kept by each model's key, and the key every output
file was produced from, so that an output whose key is unchanged is left as it is instead of rendered again
(content-addressed memoisation, as in build systems such as Bazel or Nix: a result is named by what it was
computed from)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import store

ROOT = Path(__file__).resolve().parent
KEYS = ".build-keys.json"   # in the build folder: relative output path -> the key it was produced from
KEEP = 4                    # statistics pickles kept per name (newest first); older ones are removed
SEGMENTS = 8                # files a cache table of per-key rows may grow to (name.npz, then name+1.npz, ...) before
                            # it is written again as one


_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f-\U0010ffff]*\Z').match  # printable ASCII but quote and backslash: JSON writes it as it is


def _plain_list(p) -> str | None:
    """canonical_json of a list of plain strings (_PLAIN), written directly; None for anything else."""
    if type(p) is list and all(type(x) is str and _PLAIN(x) for x in p):
        return '["' + '","'.join(p) + '"]' if p else "[]"
    return None


def canonical_text(p) -> str:
    """store.canonical_json(p); a list of plain strings, an empty dict and a dict of such lists by plain names (most
    keys' parts: a merge's constituents, a model without a manifest, every merge's constituents) are written
    directly, the same text without the encoder's cost (tested equal)."""
    text = _plain_list(p)
    if text is not None:
        return text
    if type(p) is dict:
        if not p:
            return "{}"
        if all(type(k) is str and _PLAIN(k) for k in p):
            names = sorted(p)
            values = [_plain_list(p[k]) for k in names]
            if None not in values:
                return "{" + ",".join(f'"{k}":{v}' for k, v in zip(names, values)) + "}"
    return store.canonical_json(p)


def digest(*parts) -> str:
    """sha256 over the parts in order (str, bytes, or anything canonical_json takes), each part delimited."""
    h = hashlib.sha256()
    for p in parts:
        b = (p if isinstance(p, bytes) else p.encode("utf-8") if isinstance(p, str) else b"null" if p is None
             else canonical_text(p).encode("utf-8"))
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def digests(prefix: str, rows) -> list[str]:
    """For each row (a sequence of str or None): the sha256 of the prefix and the row's parts, each part
    delimited by its length (None apart from ''): the per-model keys of ten thousand models at a third of
    digest's cost per call (one update per row)."""
    base = hashlib.sha256(f"{len(prefix)}:{prefix}".encode("utf-8"))
    out = []
    for row in rows:
        h = base.copy()
        h.update("".join("-" if p is None else f"{len(p)}:{p}" for p in row).encode("utf-8"))
        out.append(h.hexdigest())
    return out


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


def cached_value(folder: Path, name: str, key: str):
    """The value cached() stored for (name, key), or None when there is none (or it cannot be read)."""
    try:
        with open(folder / f"{name}-{key}.pkl", "rb") as f:
            return pickle.load(f)  # our own cache file, written by cached(); never a submission's
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return None


def _now_or_later(later: list[Callable[[], None]] | None, write: Callable[[], None]) -> None:
    """write() now, or appended to later (the caller runs it once the value is no longer on its critical path)."""
    if later is None:
        write()
    else:
        later.append(write)


def cached(folder: Path, name: str, key: str, compute: Callable[[], object], later: list | None = None):
    """compute() once per key: its value is pickled at folder/name-key.pkl and read back when the key recurs.
    Returns (value, hit). later: see _now_or_later (the value must not change before the write runs)."""
    path = folder / f"{name}-{key}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f), True
    value = compute()
    _now_or_later(later, lambda: _store(folder, name, path, value))
    return value, False


def _store(folder: Path, name: str, path: Path, value) -> None:
    """cached()'s file: value pickled to a temporary file and renamed; only the KEEP newest of name are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    old = sorted(folder.glob(f"{name}-*.pkl"), key=lambda q: q.stat().st_mtime, reverse=True)[KEEP:]
    for q in old:
        q.unlink(missing_ok=True)


def _arg_part(a):
    """A Memo argument as a digest part: an array by its dtype, shape and bytes; anything else as canonical JSON."""
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            raise TypeError("Memo: object arrays have no stable bytes; pass numeric arrays")
        return [a.dtype.str, list(a.shape), digest(np.ascontiguousarray(a).tobytes())]
    return a


class Memo:
    """Values of pure functions kept by the sha256 of the function's name, the code version and the arguments
    (arrays by their bytes): memo(fn, *args) is fn(*args), computed only for arguments not seen by the previous
    build. The values this build used are kept in one file (the previous build's others are dropped), so a new
    submission recomputes only the statistics whose inputs it changed (one correlation per method and diagnostic,
    one fitted scatter, one power simulation per number of sets)."""

    def __init__(self, path: Path, version: str):
        self.path, self.version = path, version
        self.old: dict = {}
        try:
            with open(path, "rb") as f:
                saved = pickle.load(f)  # our own cache file, written by save(); never a submission's
            if isinstance(saved, dict) and saved.get("version") == version:
                self.old = saved["values"]
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, ValueError):
            pass
        self.new: dict = {}
        self.hits = self.misses = 0

    def __call__(self, fn: Callable, *args):
        key = digest(fn.__module__, fn.__qualname__, *map(_arg_part, args))
        if key not in self.new:
            if key in self.old:
                self.new[key] = self.old[key]
                self.hits += 1
            else:
                self.new[key] = fn(*args)
                self.misses += 1
        return self.new[key]

    def save(self) -> None:
        """Keep this build's values (written to a temporary file and renamed)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump({"version": self.version, "values": self.new}, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.path)


def _arrow_table(frame: pd.DataFrame):
    """frame (without its index) as an Arrow table, or None when Arrow cannot type one of its columns (objects of
    mixed types): csv_bytes then writes it with pandas."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def csv_bytes(frame: pd.DataFrame, header: bool = True) -> bytes:
    """frame, without its index, as CSV: by Arrow's writer (ten times faster than pandas' to_csv at 300,000 rows;
    strings quoted, a missing value empty, a float in its shortest form that reads back the same), or by pandas'
    where Arrow cannot type a column."""
    import pyarrow.csv as pa_csv

    table = _arrow_table(frame)
    if table is None:
        return frame.to_csv(index=False, header=header, lineterminator="\n").encode("utf-8")
    buf = io.BytesIO()
    pa_csv.write_csv(table, buf, pa_csv.WriteOptions(include_header=header, quoting_style="needed"))
    return buf.getvalue()


def _write_pieces(path: Path, src: Path, pieces: list) -> None:
    """path holds the pieces in order: bytes as they are, [offset, length] as that range of src."""
    copies = any(type(p) is list for p in pieces)
    with open(path, "wb") as out, (open(src, "rb") if copies else contextlib.nullcontext()) as f:
        for p in pieces:
            if type(p) is not list:
                out.write(p)
                continue
            out.flush()
            o, n = p
            try:
                while n:
                    k = os.copy_file_range(f.fileno(), out.fileno(), n, o)
                    if not k:
                        raise OSError("copy_file_range copied nothing")
                    o, n = o + k, n - k
                out.seek(0, os.SEEK_END)
            except (AttributeError, OSError):  # no copy_file_range here (not Linux, another file system): read and write
                f.seek(o)
                out.write(f.read(n))


def _rewrite_tail(path: Path, keep: int, pieces: list) -> None:
    """path keeps its first `keep` bytes, followed by the pieces: bytes as they are, [offset, length] as that range
    of path before it is cut (read first)."""
    with open(path, "r+b") as f:
        tail = []
        for p in pieces:
            if type(p) is list:
                f.seek(p[0])
                p = f.read(p[1])
            tail.append(p)
        f.truncate(keep)
        f.seek(keep)
        f.write(b"".join(tail))


class Outputs:
    """Writes the files of a build folder in place, each atomically (a temporary file renamed over it) but for a
    spliced file whose start is kept (_splice: cut and appended to, so a reader during the build can see it
    short): a file whose key matches the key it was last produced from is left as it is, any other is produced.
    The keys are out/.build-keys.json; a build moves them aside while it runs, so one that stops half-way vouches for no file
    and the next makes every file again. save() records the new keys and removes the files this build did not
    produce. Nothing is linked or copied: a rebuild after one new submission touches only what changed."""

    def __init__(self, out: Path):
        self.out = out
        keys, aside = out / KEYS, out / (KEYS + ".building")
        try:
            self.old_keys = json.loads(keys.read_text(encoding="utf-8"))
            os.replace(keys, aside)
        except (OSError, ValueError):
            self.old_keys = {}
            if out.exists():  # not a build of this kind, or one that stopped half-way: start from nothing
                import shutil

                shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        self.keys: dict = {}
        self.reused = 0
        self.made = 0

    def child(self) -> "Outputs":
        """An Outputs over the same folder and previous keys with nothing recorded yet (for a worker)."""
        c = Outputs.__new__(Outputs)
        c.out, c.old_keys, c.keys, c.reused, c.made = self.out, self.old_keys, {}, 0, 0
        return c

    def reuse(self, rel: str, key: str) -> bool:
        """True (and counted) when rel was last produced from this key and is still there."""
        self.keys[rel] = key
        if self.old_keys.get(rel) == key and os.path.isfile(self.out / rel):
            self.reused += 1
            return True
        return False

    def _put(self, rel: str, write: Callable[[Path], None]) -> None:
        """rel is written by write(path): in place when this folder had no such file (nothing to protect; without
        the keys, a half-written build is made again), else to a temporary file renamed over the old one."""
        path = self.out / rel
        if path.parent != self.out and not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}") if rel in self.old_keys else path
        write(tmp)
        if tmp != path:
            os.replace(tmp, path)

    def _write(self, rel: str, data: bytes | str) -> None:
        """rel holds data (text as UTF-8), written by _put."""
        self._put(rel, lambda p: p.write_text(data, encoding="utf-8") if isinstance(data, str) else p.write_bytes(data))

    def put_text(self, rel: str, text: str) -> None:
        """rel holds text: for a file whose key reuse() found new, made later than the check."""
        self._write(rel, text)
        self.made += 1

    def text(self, rel: str, key: str, produce: Callable[[], str]) -> None:
        """rel holds produce()'s text, made only when key is new."""
        if not self.reuse(rel, key):
            self._write(rel, produce())
            self.made += 1

    def file(self, rel: str, key: str, write: Callable[[Path], None]) -> None:
        """rel is written by write(path) (through _put), called only when key is new."""
        if not self.reuse(rel, key):
            self._put(rel, write)
            self.made += 1

    def grouped_csv(self, rel: str, frame: pd.DataFrame, by: str, key_of: dict[str, str]) -> None:
        """rel holds frame as CSV (csv_bytes, rows in frame order), whose rows come in groups of equal `by`
        (consecutive). A group whose key (key_of) is as when rel was last written is copied from the old file's
        bytes, not formatted again; its byte range is kept with the keys. A frame whose groups are not consecutive
        is written whole."""
        header = csv_bytes(frame.iloc[:0])  # only the rows to write are converted: most groups are copied
        if frame.empty:
            return self.file(rel, digest("empty", header.decode("utf-8")), lambda p: p.write_bytes(header))
        codes, uniques = pd.factorize(frame[by], use_na_sentinel=False)  # not an object array of every row's value
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], len(codes)]
        names = [str(x) for x in np.asarray(uniques, dtype=object)[codes[starts]]]
        keys = [key_of.get(n) for n in names]
        if len(set(names)) < len(names) or any(k is None for k in keys):
            return self.file(rel, digest(header.decode("utf-8"), frame_digest(frame)),
                             lambda p: p.write_bytes(csv_bytes(frame)))
        total = digest(header.decode("utf-8"), names, keys)
        old = self.old_keys.get(rel + "#groups")
        if self.reuse(rel, total):
            self.keys[rel + "#groups"] = old
            return
        path = self.out / rel
        old_groups = old["groups"] if isinstance(old, dict) and old.get("header") == header.decode("utf-8") and path.is_file() else {}
        need = [i for i, (n, k) in enumerate(zip(names, keys)) if old_groups.get(n, [None])[0] != k]
        chunks: dict[int, bytes] = {}
        if need:
            idx = np.concatenate([np.arange(starts[i], ends[i]) for i in need])
            text = csv_bytes(frame.iloc[idx], header=False)
            line_end = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10) + 1
            if len(line_end) == len(idx):  # one line per row (no cell holds a newline): cut at line ends
                line_start = np.r_[0, line_end[:-1]]
                pos = 0
                for i in need:
                    n = int(ends[i] - starts[i])
                    chunks[i] = text[line_start[pos]:line_end[pos + n - 1]]
                    pos += n
            else:
                for i in need:
                    chunks[i] = csv_bytes(frame.iloc[starts[i]:ends[i]], header=False)
        rec = self._splice(rel, list(zip(names, keys)), chunks, old_groups, header)
        self.keys[rel + "#groups"] = {"header": header.decode("utf-8"), "groups": rec}

    def concat_need(self, rel: str, items: list[tuple[str, str]]) -> list[int]:
        """Which of items ((name, key) of each part of rel, in order) concat will need made: those whose key is not
        the one their bytes in the old rel were made from."""
        old = self.old_keys.get(rel + "#parts")
        parts = old if isinstance(old, dict) and os.path.isfile(self.out / rel) else {}
        return [j for j, (name, key) in enumerate(items) if parts.get(name, [None])[0] != key]

    def concat(self, rel: str, items: list[tuple[str, str]], made: dict[int, bytes]) -> None:
        """rel holds the parts of items ((name, key), in order) back to back: made[j] for the parts concat_need
        named, the old file's bytes for the others (each part's byte range is kept with the keys). For formats
        whose parts concatenate, such as JSON lines or gzip members."""
        old = self.old_keys.get(rel + "#parts")
        if self.reuse(rel, digest(items)):
            self.keys[rel + "#parts"] = old
            return
        parts = old if isinstance(old, dict) and os.path.isfile(self.out / rel) else {}
        self.keys[rel + "#parts"] = self._splice(rel, items, made, parts)

    def _splice(self, rel: str, items: list[tuple[str, str]], made: dict[int, bytes], old: dict, head: bytes = b"") -> dict:
        """Write rel as head and the parts of items ((name, key), in order): made[j] where given, else the bytes of
        the old rel at the range old[name] = [key, offset, length], copied file to file (consecutive ranges at once;
        by the kernel where it can, os.copy_file_range). Where the new file starts as the old one does and most of
        it is that start (a submission added at the end), the old file is cut after it and the rest written in
        place (_rewrite_tail), not copied whole. Returns the new ranges by name."""
        # bytes, or [offset, length] of the old file (which starts with head wherever old ranges are given)
        pieces: list = ([[0, len(head)]] if old else [head]) if head else []
        rec, off = {}, len(head)
        for j, (name, key) in enumerate(items):
            if j in made:
                n = len(made[j])
                pieces.append(made[j])
            else:
                _, o, n = old[name]
                if pieces and type(pieces[-1]) is list and sum(pieces[-1]) == o:
                    pieces[-1][1] += n
                else:
                    pieces.append([o, n])
            rec[name] = [key, off, n]
            off += n
        src = self.out / rel
        if rel in self.old_keys and pieces and type(pieces[0]) is list and pieces[0][0] == 0 and \
                sum(p[1] if type(p) is list else len(p) for p in pieces[1:]) < pieces[0][1]:
            _rewrite_tail(src, pieces[0][1], pieces[1:])
            self.made += 1
            return rec
        if rel not in self.old_keys and any(type(p) is list for p in pieces):  # _put would write over it in place
            blob = src.read_bytes()
            pieces = [blob[p[0]:p[0] + p[1]] if type(p) is list else p for p in pieces]
        self._put(rel, lambda p: _write_pieces(p, src, pieces))
        self.made += 1
        return rec

    def merge(self, keys: dict[str, str], reused: int, made: int) -> None:
        """Take in what a worker process produced."""
        self.keys.update(keys)
        self.reused += reused
        self.made += made

    def save(self) -> None:
        """Record the keys of this build and remove the files of the previous one that it did not produce, and the
        folders that leaves empty (a site of the previous layout: models/ once held a page per model)."""
        folders = set()
        for rel in self.old_keys:
            if rel not in self.keys and "#" not in rel:
                (self.out / rel).unlink(missing_ok=True)
                folders.update(p for p in (self.out / rel).parents if p != self.out and self.out in p.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        (self.out / KEYS).write_text(json.dumps(self.keys, sort_keys=True), encoding="utf-8")
        (self.out / (KEYS + ".building")).unlink(missing_ok=True)


def blocks(folder: Path, name: str, keys: list[str], make: Callable[[list[int]], tuple[dict, list[int]]],
           strings: tuple[str, ...], version: str = "", later: list | None = None) -> list[dict]:
    """Column blocks of keys' rows: make(indices) builds the rows of keys[indices] at once (one call, for the keys
    the previous call did not see): equal-length numpy arrays by column name, each key's rows consecutive and in
    order, and each key's number of rows. The rows of keys seen in earlier calls are taken back instead: they are kept
    as a table in folder (_store_table; read without pickle): the `strings` columns as int32 codes into a
    vocabulary, the others as numeric arrays, and each key's row range. Returns the rows of keys in order as one
    block (a list of it; empty for no keys); string cells come back as str or None in object arrays.
    version: the digest of the code that makes blocks (a table of another version is not reused); later: see _now_or_later."""
    files = _load_table(folder, name, version, {"keys", "lens", "starts", "columns"} | {f"vocab_{c}" for c in strings})
    old, vocab = _joined_blocks(files, strings)
    pos = {k: i for i, k in enumerate(old["keys"].tolist())} if old else {}
    code_of = {c: {s: i for i, s in enumerate(v)} for c, v in vocab.items()}
    need = [i for i, k in enumerate(keys) if k not in pos]
    made, made_lens = make(need) if need else ({}, [])
    made_coded = {}  # the rows made now, coded for the table (one factorize per column)
    for c, col in made.items():
        if c in strings:
            local, uniques = pd.factorize(col, use_na_sentinel=True)
            table = code_of[c]
            for u in uniques:
                if u not in table:
                    table[u] = len(vocab[c])
                    vocab[c].append(u)
            col = np.append(np.array([table[u] for u in uniques], dtype=np.int32), np.int32(-1))[local]
        elif col.dtype == object:
            col = np.array([np.nan if v is None else v for v in col], dtype=float)
        made_coded[c] = col
    made_start = dict(zip(need, np.concatenate([[0], np.cumsum(made_lens)]).tolist()))
    made_len = dict(zip(need, made_lens))
    out, coded, lens = [], [], []
    i = 0
    while i < len(keys):
        j = i + 1
        if keys[i] in pos:
            while j < len(keys) and keys[j] in pos:
                j += 1
            run = np.array([pos[k] for k in keys[i:j]], dtype=np.int64)
            n = old["lens"][run]
            starts = old["starts"][run]
            if (starts[1:] == starts[:-1] + n[:-1]).all():  # the keys' rows follow each other in the table: a view
                rows = slice(int(starts[0]), int(starts[0] + n.sum()))
            else:  # the run's rows of the table, gathered
                rows = np.repeat(starts - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(int(n.sum()))
            part = {c: old["col_" + c][rows] for c in old["columns"].tolist()}
            coded.append(part)
            out.append({c: v for c, v in part.items() if c not in strings})  # string columns: decoded below, once
            lens += n.tolist()
        else:
            while j < len(keys) and keys[j] not in pos:
                j += 1
            a, b = made_start[i], made_start[j - 1] + made_len[j - 1]
            out.append({c: v[a:b] for c, v in made.items() if c not in strings})
            coded.append({c: v[a:b] for c, v in made_coded.items()})
            lens += [made_len[x] for x in range(i, j)]
        i = j
    # one block: the string columns' codes joined and decoded once (a decode per run, then a join of the object
    # arrays, costs twice as much), or as make gave them when nothing was taken back; the others joined (a single
    # run taken as it is)
    one = lambda parts: parts[0] if len(parts) == 1 else np.concatenate(parts)
    decoded = lambda c: made[c] if len(need) == len(keys) else _decode(one([p[c] for p in coded]), vocab[c])
    block = {c: decoded(c) if c in strings else one([o[c] for o in out]) for c in (list(coded[0]) if coded else [])}

    def whole() -> dict:
        cols = list(coded[0]) if coded else list(made)
        return dict(keys=np.array(keys, dtype=str), lens=np.array(lens, dtype=np.int64), starts=_starts(lens),
                    columns=np.array(cols, dtype=str), **{f"col_{c}": np.concatenate([p[c] for p in coded]) for c in cols},
                    **{f"vocab_{c}": np.array(vocab[c], dtype=str) for c in strings})

    def added() -> dict:  # the new rows with a vocabulary of their own strings only
        arrays = {}
        for c, col in made_coded.items():
            if c in strings:
                used, col = np.unique(col, return_inverse=True)
                col = np.where(used[col] < 0, -1, col - int((used < 0).sum())).astype(np.int32)
                arrays[f"vocab_{c}"] = np.array([vocab[c][u] for u in used if u >= 0], dtype=str)
            arrays[f"col_{c}"] = col
        for c in strings:
            arrays.setdefault(f"vocab_{c}", np.zeros(0, dtype=str))
        return dict(keys=np.array([keys[i] for i in need], dtype=str), lens=np.array(made_lens, dtype=np.int64),
                    starts=_starts(made_lens), columns=np.array(list(made_coded), dtype=str), **arrays)

    _store_table(folder, name, version, files, len(keys), len(need), len(pos) - (len(keys) - len(need)), whole, added, later)
    return [block] if coded else []


def _starts(lens: list[int]) -> np.ndarray:
    """Each key's first row, from the keys' numbers of rows."""
    return np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if len(lens) else np.zeros(0, np.int64)


def _joined_blocks(files: list[dict], strings: tuple[str, ...]) -> tuple[dict | None, dict[str, list]]:
    """The files of a blocks table as one (each file's string codes mapped into one vocabulary, the first file's
    extended by the later files' new strings), and that vocabulary."""
    files = [f for f in files if all(f"col_{c}" in f for c in files[0]["columns"].tolist())
             and f["columns"].tolist() == files[0]["columns"].tolist()] if files else []
    if not files:
        return None, {c: [] for c in strings}
    vocab = {c: files[0]["vocab_" + c].tolist() for c in strings}
    if len(files) == 1:
        return files[0], vocab
    code_of = {c: {s: i for i, s in enumerate(v)} for c, v in vocab.items()}
    cols = files[0]["columns"].tolist()
    parts: dict[str, list] = {c: [] for c in cols}
    for f in files:
        for c in cols:
            col = f["col_" + c]
            if c in strings:
                table = code_of[c]
                for u in f["vocab_" + c].tolist():
                    if u not in table:
                        table[u] = len(vocab[c])
                        vocab[c].append(u)
                col = np.append(np.array([table[u] for u in f["vocab_" + c].tolist()], dtype=np.int32), np.int32(-1))[col]
            parts[c].append(col)
    rows_before = np.cumsum([0] + [int(f["lens"].sum()) for f in files[:-1]])
    return {"keys": np.concatenate([f["keys"] for f in files]), "lens": np.concatenate([f["lens"] for f in files]),
            "starts": np.concatenate([f["starts"] + r for f, r in zip(files, rows_before)]), "columns": files[0]["columns"],
            **{f"col_{c}": np.concatenate(v) for c, v in parts.items()}}, vocab


def _segment_paths(folder: Path, name: str) -> list[Path]:
    """The additions to the table name in folder (name+1.npz, name+2.npz, ...), oldest first."""
    found = []
    for p in folder.glob(f"{name}+*.npz"):
        n = p.name[len(name) + 1:-len(".npz")]
        if n.isdigit():
            found.append((int(n), p))
    return [p for _, p in sorted(found)]


def _load_table(folder: Path, name: str, version: str, need: set[str]) -> list[dict]:
    """The files of the cache table name of this version that hold `need` (read without pickle): the whole table of
    an earlier build (name.npz), then what each later build added (name+1.npz, ...). [] without a usable name.npz."""
    base = _load_npz(folder / f"{name}.npz", version, need)
    if base is None:
        return []
    return [base] + [t for t in (_load_npz(p, version, need) for p in _segment_paths(folder, name)) if t is not None]


def _store_table(folder: Path, name: str, version: str, files: list[dict], n_keys: int, n_new: int, n_stale: int,
                 whole: Callable[[], dict], added: Callable[[], dict], later: list | None) -> None:
    """Keep a cache table after a call over n_keys keys that made n_new and left n_stale of the table's unused: the
    new keys' rows as one more file (added()) when they are few, and the table has a base, fewer than SEGMENTS
    files and few stale rows; else the whole table of this call (whole()) as the base, its additions removed. A
    rebuild after one submission so writes its rows only, not the table again."""
    if files and len(files) < SEGMENTS and n_new * 8 <= n_keys and n_stale * 4 <= n_keys:
        if n_new:
            segs = _segment_paths(folder, name)
            n = int(segs[-1].name[len(name) + 1:-len(".npz")]) + 1 if segs else 1
            _now_or_later(later, lambda: _save_npz(folder / f"{name}+{n}.npz", version, **added()))
        return
    if files and not n_new and not n_stale and len(files) == 1:
        return  # the table is this call's already

    def write() -> None:
        _save_npz(folder / f"{name}.npz", version, **whole())
        for q in _segment_paths(folder, name):
            q.unlink(missing_ok=True)

    _now_or_later(later, write)


def missing(folder: Path, name: str, keys: list[str], version: str = "") -> list[int]:
    """The indices of keys whose rows blocks(folder, name, keys, ..., version) will make (not in its table), read
    from the table's keys alone."""
    have: set[str] = set()
    for path in [folder / f"{name}.npz"] + _segment_paths(folder, name):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["version"]) == version:
                    have.update(z["keys"].tolist())
                elif path.name == f"{name}.npz":
                    break  # no table of this version: its additions are not read either (_load_table)
        except (OSError, ValueError, KeyError, EOFError):
            if path.name == f"{name}.npz":
                break
    return [i for i, k in enumerate(keys) if k not in have]


def rows(folder: Path, name: str, keys: list[str], make: Callable[[list[int]], np.ndarray], version: str = "",
         later: list | None = None) -> np.ndarray:
    """A float matrix with one row per key: make(indices) computes the rows of keys[indices] (one call, for all the
    keys earlier calls did not see), the others are taken back from the table kept in folder (_store_table; read
    without pickle; later: see _now_or_later). For per-model statistics such as each model's bootstrap scores."""
    files = _load_table(folder, name, version, {"keys", "rows"})
    files = [f for f in files if f["rows"].shape[1:] == files[0]["rows"].shape[1:]]
    old = {"keys": np.concatenate([f["keys"] for f in files]), "rows": np.concatenate([f["rows"] for f in files])} \
        if len(files) > 1 else files[0] if files else None
    pos = {k: i for i, k in enumerate(old["keys"].tolist())} if old else {}
    have = np.array([pos.get(k, -1) for k in keys], dtype=np.intp)
    need = np.flatnonzero(have < 0).tolist()
    made = np.asarray(make(need), dtype=float) if need else None
    width = made.shape[1] if made is not None else old["rows"].shape[1] if old else 0
    out = np.empty((len(keys), width))
    if made is not None:
        out[need] = made
    if len(need) < len(keys):
        out[have >= 0] = old["rows"][have[have >= 0]]
    _store_table(folder, name, version, files, len(keys), len(need), len(pos) - (len(keys) - len(need)),
                 lambda: dict(keys=np.array(keys, dtype=str), rows=out),
                 lambda: dict(keys=np.array([keys[i] for i in need], dtype=str), rows=made), later)
    return out


def _decode(codes: np.ndarray, vocab: list) -> np.ndarray:
    """Strings of codes (-1: None) as an object array."""
    return np.array(vocab + [None], dtype=object)[codes]


def _load_npz(path: Path, version: str, need: set[str]) -> dict | None:
    """The arrays of a cache table saved by _save_npz (read without pickle), or None when there is none, it was made
    by another version of the code, or it lacks one of `need` (then every piece is made again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            t = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return t if str(t.get("version", "")) == version and need <= set(t) else None


def _save_npz(path: Path, version: str, **arrays: np.ndarray) -> None:
    """A cache table: the arrays and the code version they were made by, written to a temporary file and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, version=np.array(version), **arrays)
    os.replace(tmp, path)


def strings(folder: Path, name: str, keys: list[str], make: Callable[[list[int]], list[list[str]]],
            version: str = "", later: list | None = None) -> list[list[str]]:
    """A list of strings per key (make(indices) gives those of keys[indices], in one call for every key earlier
    calls did not see; always the same number of strings per key), the others taken back: kept as a table in
    folder (_store_table) of UTF-8 bytes with offsets (read without pickle; later: see _now_or_later). For pieces of
    HTML that depend on one model only (a leaderboard row without its rank)."""
    files = _load_table(folder, name, version, {"keys", "offsets", "data"})
    files = [f for f in files if f["offsets"].shape[1:] == files[0]["offsets"].shape[1:]]
    shift = np.cumsum([0] + [len(f["data"]) for f in files[:-1]])
    old = {"keys": np.concatenate([f["keys"] for f in files]),
           "offsets": np.concatenate([f["offsets"] + d for f, d in zip(files, shift)])} if files else None
    pos = {k: i for i, k in enumerate(old["keys"].tolist())} if old else {}
    blob = b"".join(f["data"].tobytes() for f in files)
    need = [i for i, k in enumerate(keys) if k not in pos]
    made = dict(zip(need, make(need))) if need else {}
    out = []
    offsets = old["offsets"].tolist() if old else []  # Python ints: a slice by numpy integers costs several times more
    for i, k in enumerate(keys):
        if i in made:
            out.append(list(made[i]))
        else:
            o = offsets[pos[k]]
            out.append([blob[a:b].decode("utf-8") for a, b in zip(o, o[1:])])

    def table(idx: list[int]) -> dict:  # the strings of keys[idx] as UTF-8 bytes, with each one's offsets
        encoded = [[s.encode("utf-8") for s in out[i]] for i in idx]
        width = max((len(p) for p in encoded), default=0)
        lens = np.array([[len(b) for b in p] for p in encoded], dtype=np.int64).reshape(len(encoded), width)
        offsets = np.concatenate([np.zeros((len(encoded), 1), np.int64), np.cumsum(lens, axis=1)], axis=1)
        offsets += np.concatenate([[0], np.cumsum(lens.sum(axis=1))[:-1]]).astype(np.int64)[:, None] if len(encoded) else 0
        return dict(keys=np.array([keys[i] for i in idx], dtype=str), offsets=offsets,
                    data=np.frombuffer(b"".join(b for p in encoded for b in p), dtype=np.uint8))

    _store_table(folder, name, version, files, len(keys), len(need), len(pos) - (len(keys) - len(need)),
                 lambda: table(list(range(len(keys)))), lambda: table(need), later)
    return out
