"""A seeded fuzzer for `babelmerge validate`: 1,200 mutated manifests and recipes written from a valid one,
checked by ONE call of the installed entry point. No traceback, exit 1, every mutated folder named on the
lines that concern it (benign mutations on none), one folder per line, every line `file: field: what; fix`,
no raw control character in the output."""

import os
import random
import re
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
REF = "family:babel-mini/"
N = 1200
SEED = 14
GOOD = {"schema_version": 1, "id": "x", "title": "Linear over two monolingual models", "authors": ["Ada"],
        "contact": "ada@example.org", "method": "linear", "method_family": "linear", "kind": "recipe", "arm": "pretrain",
        "constituents": [REF + "mono-en", REF + "mono-ru"], "recipe": "recipe.yml", "suites": ["babel-mini-v2"],
        "license": "MIT"}
RECIPE = {"merge_method": "linear", "dtype": "float32",
          "models": [{"model": REF + "mono-en", "parameters": {"weight": 1.0}}, {"model": REF + "mono-ru", "parameters": {"weight": 1.0}}]}
TEXT_FIELDS = ["title", "contact", "method", "license"]
REQUIRED = ["id", "title", "authors", "contact", "method", "kind", "constituents", "license", "recipe"]
CONTROL = ["\n", "\r", "\t", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"]
BENIGN = ["Fusión de modelos", "模型合并", "دمج النماذج", "👩‍🔬 merge", "Ca\u0301fe\u0301 merge", "zero\u200bwidth title"]
ESCAPES = {"\n": "\\n", "\u202e": "\\u202e", "\x1b": "\\x1b", "\t": "\\t"}  # the test's own escaping of folder names


def dump(obj, raw_unicode: bool = False) -> str:
    """YAML text; non-ASCII characters escaped ("\\x85"), so that a control character reaches the parser as
    itself (written raw, NEL or U+2028 would be read as a line break), except where `raw_unicode`."""
    return yaml.safe_dump(obj, allow_unicode=raw_unicode, sort_keys=False)


def deep(depth: int):
    v = "x"
    for _ in range(depth):
        v = [v]
    return v


def mutate(rng: random.Random, name: str) -> tuple[str, object, object, bool]:
    """(class, manifest text or bytes, recipe text or bytes, benign) for folder `name`."""
    m, r = {**GOOD, "id": name}, {**RECIPE}
    cls = rng.choice(CLASSES)
    benign = False
    if cls == "wrong-type":
        f = rng.choice(["title", "contact", "method", "license", "kind", "arm", "id", "authors", "constituents",
                        "suites", "schema_version", "recipe"])
        pool = {"authors": ["Ada", 5, {"a": 1}, None], "constituents": [REF + "mono-en", 3, {"m": 1}, None],
                "suites": ["babel-mini-v2", 7, None], "schema_version": [2, "one", None, [1], 1.5]}
        m[f] = rng.choice(pool.get(f, [123, 4.5, True, None, ["a", "b"], {"k": "v"}]))
    elif cls == "missing":
        del m[rng.choice(REQUIRED)]
    elif cls == "unknown-field":
        m["".join(rng.choice("abcdefghij_") for _ in range(rng.randint(1, 12))) + "_x"] = rng.choice([1, "v", None, [1]])
    elif cls == "huge-value":
        f = rng.choice(TEXT_FIELDS)
        m[f] = "y" * rng.randint(300, 20000)
    elif cls == "huge-list":
        m[rng.choice(["authors", "suites"])] = ["Ada"] * rng.randint(10_001, 20_000)
    elif cls == "huge-file":
        return cls, dump(m) + "# " + "z" * (2**20 + rng.randint(1, 5000)) + "\n", dump(r), False
    elif cls == "deep-value":
        m[rng.choice(TEXT_FIELDS + ["authors"])] = deep(rng.randint(17, 300))
    elif cls == "control-char":
        f = rng.choice(TEXT_FIELDS + ["authors"])
        c = rng.choice(CONTROL)
        m[f] = ["Ada" + c + "x"] if f == "authors" else m[f][:3] + c + m[f][3:]
    elif cls == "bidi":
        f = rng.choice(TEXT_FIELDS)
        m[f] = m[f][:2] + rng.choice(BIDI) + m[f][2:]
    elif cls == "surrogate":
        f = rng.choice(TEXT_FIELDS)
        text = dump(m).replace(f"{f}: {dump(m[f]).splitlines()[0]}", f'{f}: "\\u{rng.randint(0xD800, 0xDFFF):04x}x"', 1)
        return cls, text, dump(r), False
    elif cls == "odd-unicode-id":
        m[rng.choice(["kind", "arm", "constituents"])] = rng.choice(["rеcipe", "mono\u200b", ["family:babel-mini/monо-en"]])
    elif cls == "benign-unicode":
        m["title"] = rng.choice(BENIGN)
        return cls, dump(m, raw_unicode=rng.random() < 0.5), dump(r), True
    elif cls == "recipe-path-escape":
        m["recipe"] = rng.choice(["../recipe.yml", "/etc/passwd", "..", ".", "", "a/../../recipe.yml", "~/.ssh/id_rsa",
                                  "/dev/zero", "recipe.yml/../../x.yml", "C:\\Windows\\win.ini", "missing.yml"])
    elif cls == "model-path-escape":
        bad = rng.choice(["/etc", "../other", "./model", "~", "file:///etc", "hf://org/m", "org/name", "org/name@main",
                          "family:babel-mini/../../etc", "/dev/zero", "model", "org/x@" + "g" * 40])
        r["models"] = [RECIPE["models"][0], {"model": bad, "parameters": {"weight": 1.0}}]
    elif cls == "recipe-wrong":
        k = rng.choice(["merge_method", "models", "dtype", "parameters", "drop"])
        if k == "drop":
            del r["merge_method"]
        else:
            r[k] = rng.choice({"merge_method": [5, "bogus", None, ["linear"]], "models": ["everything", [1, 2], 3],
                               "dtype": [7, "float77"], "parameters": ["heavy", [1]]}[k])
    elif cls == "recipe-huge-deep":
        r["parameters"] = deep(rng.randint(17, 100)) if rng.random() < 0.5 else {"w": [1.0] * 12_000}
    elif cls == "yaml-syntax":
        return cls, rng.choice(["id: [unclosed\n", "title: 'a\n", "\tid: x\n", "a: b: c\n", "- a\n- b\n", "", "null\n",
                                "key: &a [*a]\n", b"title: \xff\xfe\n"]), dump(r), False
    elif cls == "recipe-syntax":
        return cls, dump(m), rng.choice(["models: [\n", "- just\n- a list\n", "", "m: &x [1]\nn: *x\n", b"\xc3\x28: 1\n"]), False
    elif cls == "folder-name":
        raise AssertionError("handled by the caller")
    return cls, dump(m), dump(r), benign


CLASSES = ["wrong-type", "missing", "unknown-field", "huge-value", "huge-list", "huge-file", "deep-value", "control-char",
           "bidi", "surrogate", "odd-unicode-id", "benign-unicode", "recipe-path-escape", "model-path-escape",
           "recipe-wrong", "recipe-huge-deep", "yaml-syntax", "recipe-syntax"]


def write(folder: Path, manifest, recipe) -> None:
    folder.mkdir()
    for f, body in (("submission.yaml", manifest), ("recipe.yml", recipe)):
        (folder / f).write_bytes(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))


def test_fuzz_one_validate_call(tmp_path):
    rng = random.Random(SEED)
    root = tmp_path / "fuzz"
    root.mkdir()
    expect = {}  # folder as a line shows it -> (class, benign)
    for i in range(N):
        name = f"f{i:04d}"
        if i % 60 == 59:  # a hostile folder name: the manifest's id cannot equal it
            odd = rng.choice(sorted(ESCAPES))
            folder = root / f"{name}{odd}x"
            write(folder, dump({**GOOD, "id": name}), dump(RECIPE))
            expect[f"{name}{ESCAPES[odd]}x"] = ("folder-name", False)
            continue
        cls, manifest, recipe, benign = mutate(rng, name)
        write(root / name, manifest, recipe)
        expect[name] = (cls, benign)
    classes = {c for c, _ in expect.values()}
    assert len(classes) == len(CLASSES) + 1 and sum(not b for _, b in expect.values()) >= 1000

    babelmerge = Path(sys.executable).parent / "babelmerge"
    t0 = time.perf_counter()
    out = subprocess.run([str(babelmerge), "validate", *sorted(str(p) for p in root.iterdir())], capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    wall = time.perf_counter() - t0
    stdout, stderr = out.stdout.decode("utf-8"), out.stderr.decode("utf-8")
    assert out.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stdout + stderr and stderr.strip() == "", stderr[-3000:]
    assert not any((unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI) for c in stdout if c != "\n")
    lines = stdout.split("\n")[:-1]
    *problems, summary = lines
    assert summary == f"{len(expect)} submission(s) checked, {len(problems)} problem(s)"
    line = re.compile(rf"^{re.escape(str(root))}/(?P<folder>[^/:]+)(/\S+)?: (?P<field>\S+): (?P<what>.+); (?P<fix>.+)$")
    named = {k: 0 for k in expect}
    for p in problems:
        got = line.match(p)
        assert got, p
        assert p.count(str(root)) == 1, p  # each line names exactly one folder
        assert got["folder"] in expect, p
        assert "could not be checked" not in p, p
        named[got["folder"]] += 1
    wrong = {k: (expect[k][0], n) for k, n in named.items() if (n == 0) != expect[k][1]}
    assert not wrong, dict(list(wrong.items())[:20])
    by_class = {c: sum(1 for k, (cc, _) in expect.items() if cc == c) for c in sorted(classes)}
    print(f"\nfuzz: {len(expect)} folders ({sum(not b for _, b in expect.values())} mutated to be refused, "
          f"{sum(b for _, b in expect.values())} benign), {len(classes)} classes {by_class}, {len(problems)} lines, "
          f"one validate call in {wall:.1f}s")
