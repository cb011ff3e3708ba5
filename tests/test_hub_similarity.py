"""The similarity stage over hub-architecture checkpoints (issue 16.7): two tiny Qwen2 (and Gemma2) fine-tunes of one
tiny base, merged from a mergekit recipe through the harness's merge path, then `babelmerge diagnostics` over the
merge and its constituents on a FLORES+ fixture. Every expected number is computed here independently: numpy on
the safetensors files, a plain per-sentence forward pass for bits per byte."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness import schema
from harness.cli import main
from realdata import make_arch_model, write_flores

LANGS = ["eng_Latn", "deu_Latn", "fra_Latn"]
N = 6


def fine_tune(base: Path, out: Path, seed: int, scale: float = 0.02) -> Path:
    """A stand-in fine-tune: the base's weights plus seeded Gaussian noise, saved with save_pretrained."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(str(base))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    model.save_pretrained(str(out), safe_serialization=True)
    PreTrainedTokenizerFast.from_pretrained(str(base)).save_pretrained(str(out))
    return out


def family(root: Path, tokenizer_dir: Path, arch: str) -> dict[str, Path]:
    base = make_arch_model(root / "base", tokenizer_dir, arch, seed=0, layers=3)
    return {"base": base, "a": fine_tune(base, root / "ft-a", 1), "b": fine_tune(base, root / "ft-b", 2)}


def merge(root: Path, m: dict[str, Path], method: str = "ties") -> Path:
    from harness.merge import run_recipe

    params = {"weight": 0.5, "density": 0.7} if method == "ties" else {"weight": 0.5}
    recipe = {"merge_method": method, "base_model": str(m["base"]), "dtype": "float32",
              "models": [{"model": str(m[k]), "parameters": params} for k in ("a", "b")]}
    path = root / "recipe" / "merge.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    merged, prov = run_recipe(path, "micro", seed=0, allow_local=True)
    assert prov["recipe"]["merge_method"] == method
    return merged


def run(merged: Path, cons: list[Path], out: Path, data: Path, base: Path | None = None, points: int = 3) -> dict:
    argv = ["diagnostics", "--merged", str(merged), "--constituents", ",".join(map(str, cons)), "--data", str(data),
            "--languages", ",".join(LANGS), "--n", str(N), "--tokens", "96", "--dtype", "float32", "--device", "cpu",
            "--path-points", str(points), "--out", str(out)]
    assert main(argv + (["--base", str(base)] if base else [])) == 0
    return json.loads(out.read_text())


def pick(res: dict, metric: str, a: str, b: str, **kw) -> list[dict]:
    return [r for r in res["rows"] if r["metric"] == metric and r["a"] == a and r["b"] == b
            and all(r.get(k) == v for k, v in kw.items())]


def np_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v.astype(np.float64) for k, v in load_file(str(path / "model.safetensors")).items()}


def probe_texts(data: Path) -> list[str]:
    import pyarrow.parquet as pq

    out = []
    for lang in LANGS:
        rows = sorted(pq.read_table(data / "flores_plus" / "dev" / f"{lang}.parquet").to_pylist(), key=lambda r: r["id"])
        out += [r["text"] for r in rows[:N]]
    return out


def bits_per_byte(path: Path, texts: list[str]) -> float:
    """One sentence at a time, no padding: -sum log2 p(token | prefix) over the sentence's UTF-8 bytes."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    nats = n_bytes = 0.0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([[start] + tok(t, add_special_tokens=False)["input_ids"]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            nats -= float(logp.gather(1, ids[0, 1:, None]).sum())
            n_bytes += len(t.encode("utf-8"))
    return nats / math.log(2) / n_bytes


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_flores(tmp_path_factory.mktemp("data"), LANGS)


def test_diagnostics_qwen2_merge(tmp_path, tokenizer_dir, data_dir, capsys):
    m = family(tmp_path, tokenizer_dir, "qwen2")
    merged = merge(tmp_path, m, "ties")
    res = run(merged, [m["a"], m["b"]], tmp_path / "diag.json", data_dir, base=m["base"])
    schema.SimilarityFile.model_validate(res)  # the file's own schema
    printed = capsys.readouterr().out
    assert "task-vector cosine" in printed and "loss barrier" in printed
    a, b, mn = m["a"].name, m["b"].name, merged.name
    n_layers = 3 + 1

    # CKA: per hidden-state layer, in [-1, 1]; the merge resembles each constituent more than they resemble each other
    ab = [r["value"] for r in sorted(pick(res, "cka_minibatch", a, b), key=lambda r: r["layer"])]
    ma = [r["value"] for r in sorted(pick(res, "cka_minibatch", mn, a), key=lambda r: r["layer"])]
    mb = [r["value"] for r in sorted(pick(res, "cka_minibatch", mn, b), key=lambda r: r["layer"])]
    assert len(ab) == len(ma) == len(mb) == n_layers
    assert all(-1 <= v < 1 - 1e-6 for v in ab + ma + mb)
    assert all(x > y for x, y in zip(ma, ab)) and all(x > y for x, y in zip(mb, ab))
    assert len(pick(res, "neuron_jaccard_lape", a, b)) == 1

    # task vectors, independently: numpy on the safetensors files, per group by the block index in the name
    w = {k: np_weights(m[k]) for k in ("a", "b", "base")}
    ta = {k: w["a"][k] - w["base"][k] for k in w["base"]}
    tb = {k: w["b"][k] - w["base"][k] for k in w["base"]}

    def group(name):
        blk = re.search(r"layers\.(\d+)\.", name)
        return {0: "lower", 1: "middle", 2: "upper"}[int(blk.group(1))] if blk else ("embeddings" if "embed" in name else "head")

    for g in ("all", "embeddings", "lower", "middle", "upper", "head"):
        names = [k for k in ta if g == "all" or group(k) == g]
        x = np.concatenate([ta[k].ravel() for k in names])
        y = np.concatenate([tb[k].ravel() for k in names])
        want = float(x @ y / np.sqrt((x @ x) * (y @ y)))
        assert pick(res, "task_cosine", a, b, group=g)[0]["value"] == pytest.approx(want, rel=1e-9, abs=1e-12)
        both = (x != 0) & (y != 0)
        assert pick(res, "sign_conflict", a, b, group=g)[0]["value"] == pytest.approx(
            float((np.sign(x) != np.sign(y))[both].sum() / both.sum()), rel=1e-12)
    assert 0 <= pick(res, "sign_conflict_trim", a, b, group="all")[0]["value"] <= 1

    # the linear path: its ends are the constituents' own bits per byte, computed here sentence by sentence
    path = sorted(pick(res, "path_bpb", a, b), key=lambda r: r["alpha"])
    assert [r["alpha"] for r in path] == [0.0, 0.5, 1.0]
    texts = probe_texts(data_dir)
    assert path[0]["value"] == pytest.approx(bits_per_byte(m["a"], texts), rel=1e-5)
    assert path[-1]["value"] == pytest.approx(bits_per_byte(m["b"], texts), rel=1e-5)
    v = [r["value"] for r in path]
    want = max(l - ((1 - t) * v[0] + t * v[-1]) for l, t in zip(v, (0.0, 0.5, 1.0)))
    assert pick(res, "loss_barrier", a, b)[0]["value"] == pytest.approx(want, abs=1e-12) and want >= 0

    # provenance: every model's hash, the probe's files, versions
    prov = res["provenance"]
    assert {v["role"] for v in prov["models"].values()} == {"merged", "constituent", "base"}
    assert set(prov["data"]["files"]) == {f"flores_plus/dev/{l}.parquet" for l in LANGS}
    assert prov["data"]["lock_sha256"] is None  # no lock file present: the data are hashed, not checked against one
    assert prov["packages"]["torch"] and prov["git"] and res["identities"][a] == prov["models"][a]["sha256"]
    assert res["diagnostics"]["probe"]["sentences"] == 3 * N


def test_diagnostics_self_and_gemma2(tmp_path, tokenizer_dir, data_dir):
    """A 'merge' that is a copy of one constituent: CKA 1 at every layer and the same LAPE neurons (Jaccard 1),
    on Gemma2 (tied embeddings, GELU gates); no base: no weight-space rows."""
    m = family(tmp_path, tokenizer_dir, "gemma2")
    copy = shutil.copytree(m["a"], tmp_path / "copy-of-a")
    res = run(copy, [m["a"], m["b"]], tmp_path / "self.json", data_dir, points=2)
    schema.SimilarityFile.model_validate(res)
    a, b = m["a"].name, m["b"].name
    assert [r["value"] for r in pick(res, "cka_minibatch", "copy-of-a", a)] == pytest.approx([1.0] * 4, abs=1e-9)
    assert pick(res, "neuron_jaccard_lape", "copy-of-a", a)[0]["value"] == 1.0
    assert all(r["value"] < 0.999 for r in pick(res, "cka_minibatch", "copy-of-a", b))
    assert not [r for r in res["rows"] if r["metric"].startswith(("task_", "sign_"))]
    texts = probe_texts(data_dir)
    ends = sorted(pick(res, "path_bpb", a, b), key=lambda r: r["alpha"])
    assert ends[0]["value"] == pytest.approx(bits_per_byte(m["a"], texts), rel=1e-5)
    assert ends[1]["value"] == pytest.approx(bits_per_byte(m["b"], texts), rel=1e-5)


def test_diagnostics_refuses_pickles_and_mismatches(tmp_path, tokenizer_dir, data_dir, capsys):
    m = family(tmp_path, tokenizer_dir, "qwen2")
    other = make_arch_model(tmp_path / "wider", tokenizer_dir, "qwen2", seed=5, hidden=48, layers=3)
    argv = lambda merged, cons: ["diagnostics", "--merged", str(merged), "--constituents", cons, "--data", str(data_dir),
                                 "--languages", "eng_Latn", "--n", "2", "--device", "cpu", "--out", str(tmp_path / "x.json")]
    capsys.readouterr()
    assert main(argv(m["a"], f"{m['b']},{other}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensors differ" in err[0] and str(other) in err[0]
    assert main(argv(m["a"], f"{m['a']},{m['b']}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "named twice" in err[0]
    (m["b"] / "pytorch_model.bin").write_bytes(b"\x80\x04K.")
    assert main(argv(m["base"], f"{m['a']},{m['b']}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickle" in err[0] and "pytorch_model.bin" in err[0]
    assert not (tmp_path / "x.json").exists()
