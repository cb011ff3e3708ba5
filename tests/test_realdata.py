"""The real-data layer (issue 16): FLORES+ and Belebele read offline from fixtures written in their public layout,
file hashes and the lock, one-line errors, the two suites' tasks, and `babelmerge evaluate --suite ... --data ...`
on tiny Qwen2 and Gemma2 checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import data, store
from harness.cli import main
from harness.suite import SUITES_DIR, load_suite
from harness.tasks import task_specs
from realdata import belebele_rows, make_arch_model, write_belebele, write_flores

LANGS = ["eng_Latn", "deu_Latn", "fra_Latn"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_flores(root, LANGS)
    write_belebele(root, LANGS)
    return root


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory, tokenizer_dir) -> Path:
    return make_arch_model(tmp_path_factory.mktemp("q") / "tiny-qwen2", tokenizer_dir, "qwen2", seed=1)


@pytest.fixture(scope="module")
def gemma2(tmp_path_factory, tokenizer_dir) -> Path:
    return make_arch_model(tmp_path_factory.mktemp("g") / "tiny-gemma2", tokenizer_dir, "gemma2", seed=2)


def suite_copy(tmp_path: Path, name: str) -> dict:
    """The suite's YAML copied to a temporary folder, so its lock is written there, not into suites/."""
    shutil.copy(SUITES_DIR / f"{name}.yaml", tmp_path / f"{name}.yaml")
    return load_suite(str(tmp_path / f"{name}.yaml"))


# -- the suites' task lists ---------------------------------------------------------------------------
def test_flores_task_list():
    suite = load_suite("flores-plus-v1")
    names = [s.name for s in task_specs(suite)]
    assert len(suite["languages"]) == 15
    assert len(names) == 15 + 14 * 2 * 2               # lm per language; both directions, zero- and 3-shot
    assert "lm:tel_Telu" in names and "mt:eng_Latn-zho_Hans" in names and "mt:ukr_Cyrl-eng_Latn+3shot" in names
    assert "mt:eng_Latn-eng_Latn" not in names


def test_belebele_task_list():
    specs = task_specs(load_suite("belebele-v1"))
    assert [s.lm_eval_name for s in specs][:2] == ["belebele_eng_Latn", "belebele_deu_Latn"]
    assert {s.kind for s in specs} == {"mc"} and len(specs) == 15


# -- the data layer -----------------------------------------------------------------------------------
def test_rename_and_formats(tmp_path):
    write_flores(tmp_path, ["eng_Latn", "deu_Latn"], fmt="jsonl", store_as={"deu_Latn": "cmn_Hans"})
    d = data.DataDir(tmp_path)
    rows = d.rows("flores_plus", "zho_Hans", "devtest")      # FLORES-200 name finds the FLORES+ file
    assert len(rows) == 12 and rows[0]["id"] == 1
    assert d.read == {"flores_plus/devtest/cmn_Hans.jsonl": store.sha256_file(tmp_path / "flores_plus/devtest/cmn_Hans.jsonl")}
    assert data.aliases("cmn_Hans") == ["cmn_Hans", "zho_Hans"]


def test_parquet_rows_match_jsonl(tmp_path):
    write_flores(tmp_path / "a", ["eng_Latn"], fmt="parquet")
    write_flores(tmp_path / "b", ["eng_Latn"], fmt="jsonl")
    a = data.DataDir(tmp_path / "a").rows("flores_plus", "eng_Latn", "dev")
    b = data.DataDir(tmp_path / "b").rows("flores_plus", "eng_Latn", "dev")
    assert [r["text"] for r in a] == [r["text"] for r in b] and len(a) == 6


def test_missing_file_one_line(tmp_path):
    write_flores(tmp_path, ["eng_Latn"])
    with pytest.raises(data.DataError) as e:
        data.DataDir(tmp_path, revisions={"flores_plus": None}).rows("flores_plus", "deu_Latn", "devtest")
    msg = str(e.value)
    assert "\n" not in msg and "flores_plus/devtest/deu_Latn.parquet" in msg
    assert "openlanguagedata/flores_plus" in msg and "data fetch" in msg


def test_missing_column_one_line(tmp_path):
    p = tmp_path / "belebele" / "data" / "eng_Latn.jsonl"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"flores_passage": "x", "question": "y"}) + "\n")
    with pytest.raises(data.DataError, match=r"eng_Latn.jsonl: no column 'mc_answer1'"):
        data.DataDir(tmp_path).rows("belebele", "eng_Latn")


def test_data_root_and_languages(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV, raising=False)
    with pytest.raises(data.DataError, match="--data DIR"):
        data.data_root(None)
    monkeypatch.setenv(data.ENV, str(tmp_path))
    assert data.data_root(None) == tmp_path
    suite_langs = load_suite("flores-plus-v1")["languages"]
    assert data.parse_languages("fra_Latn,cmn_Hans", suite_langs) == ["fra_Latn", "zho_Hans"]  # suite order, renames
    with pytest.raises(data.DataError, match="xxx_Latn is not a language of this suite"):
        data.parse_languages("xxx_Latn", suite_langs)


def test_lock_write_check_and_refuse(tmp_path, capsys):
    root = write_belebele(write_flores(tmp_path / "d", ["eng_Latn", "deu_Latn"]), ["eng_Latn", "deu_Latn"])
    suite = suite_copy(tmp_path, "flores-plus-v1")
    assert main(["data", "lock", suite["path"], "--data", str(root), "--languages", "eng_Latn,deu_Latn"]) == 0
    lock = json.loads((tmp_path / "flores-plus-v1.lock.json").read_text())
    assert sorted(lock["files"]) == ["flores_plus/dev/deu_Latn.parquet", "flores_plus/dev/eng_Latn.parquet",
                                     "flores_plus/devtest/deu_Latn.parquet", "flores_plus/devtest/eng_Latn.parquet"]
    assert lock["files"]["flores_plus/dev/eng_Latn.parquet"] == store.sha256_file(root / "flores_plus/dev/eng_Latn.parquet")
    d = data.open_data(suite, root)
    d.rows("flores_plus", "eng_Latn", "dev")                 # locked and unchanged: read
    write_flores(root, ["deu_Latn"], n_dev=5)                # the data changed under the lock
    with pytest.raises(data.DataError) as e:
        data.open_data(suite, root).rows("flores_plus", "deu_Latn", "dev")
    assert "\n" not in str(e.value) and "differs from" in str(e.value) and "lock" in str(e.value)
    # through the command line: one line on stderr, exit 2, no traceback
    rc = main(["evaluate", "--suite", suite["path"], "--data", str(root), "--languages", "eng_Latn,deu_Latn",
               "--model", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "differs from" in err[0]


# -- end to end ---------------------------------------------------------------------------------------
def _results(out: Path, name: str, suite: str) -> dict:
    return json.loads((out / name / "results" / f"{suite}.json").read_text())


def test_evaluate_flores_qwen2(data_dir, qwen2, tmp_path):
    out = tmp_path / "out"
    rc = main(["evaluate", "--suite", "flores-plus-v1", "--data", str(data_dir), "--languages", "eng_Latn,deu_Latn",
               "--model", str(qwen2), "--out-dir", str(out), "--limit", "4", "--dtype", "float32", "--device", "cpu"])
    assert rc == 0
    res = _results(out, "tiny-qwen2", "flores-plus-v1")
    assert res["status"] == "ok"
    assert set(res["tasks"]) == {"lm:eng_Latn", "lm:deu_Latn", "mt:eng_Latn-deu_Latn", "mt:deu_Latn-eng_Latn",
                                 "mt:eng_Latn-deu_Latn+3shot", "mt:deu_Latn-eng_Latn+3shot"}
    files = res["provenance"]["data"]["files"]
    assert set(files) == {f"flores_plus/{s}/{l}.parquet" for s in ("dev", "devtest") for l in ("eng_Latn", "deu_Latn")}
    assert all(files[f] == store.sha256_file(data_dir / f) for f in files)
    metrics = {(r["task"], r["metric"]) for r in res["rows"]}
    for m in ("chrf++", "chrf++_control", "chrf++_over_control", "bleu", "xmi", "empty_rate", "off_target_rate"):
        assert ("mt:eng_Latn-deu_Latn", m) in metrics
    bpb = next(r for r in res["rows"] if r["task"] == "lm:deu_Latn")
    assert bpb["n"] == 4 and bpb["value"] > 0
    # the per-document file lets the score be recomputed: bits per byte from the stored log-likelihoods
    docs = json.loads((out / "tiny-qwen2" / "results" / "flores-plus-v1.docs.json").read_text())["tasks"]["lm:deu_Latn"]
    import math
    assert bpb["value"] == pytest.approx(-sum(docs["ll"]) / math.log(2) / sum(docs["bytes"]))
    texts = [r["text"] for r in data.read_rows(data_dir / "flores_plus/devtest/deu_Latn.parquet")]
    assert sum(docs["bytes"]) == sum(len(texts[i].encode()) for i in (0, 4, 7, 11))  # 4 spaced of 12


def test_evaluate_belebele_gemma2(data_dir, gemma2, tmp_path):
    out = tmp_path / "out"
    rc = main(["evaluate", "--suite", "belebele-v1", "--data", str(data_dir), "--languages", "eng_Latn,fra_Latn",
               "--model", str(gemma2), "--out-dir", str(out), "--dtype", "float32", "--device", "cpu"])
    assert rc == 0
    res = _results(out, "tiny-gemma2", "belebele-v1")
    assert set(res["provenance"]["data"]["files"]) == {"belebele/data/eng_Latn.jsonl", "belebele/data/fra_Latn.jsonl"}
    docs = json.loads((out / "tiny-gemma2" / "results" / "belebele-v1.docs.json").read_text())["tasks"]["mc:fra_Latn"]
    # gold from the file itself (one-based string), independent of lm-eval's doc_to_target
    assert docs["gold"] == [int(r["correct_answer_num"]) - 1 for r in belebele_rows("fra_Latn")]
    acc = next(r for r in res["rows"] if r["task"] == "mc:fra_Latn" and r["metric"] == "acc")
    hits = [max(range(4), key=lambda k: ll[k]) == g for ll, g in zip(docs["choice_ll"], docs["gold"])]
    assert acc["value"] == pytest.approx(sum(hits) / 8) and acc["n"] == 8


# -- GPU backends -------------------------------------------------------------------------------------
def test_vllm_model_args_pass_parallelism_through():
    from harness.evaluate import vllm_args

    a = vllm_args(Path("/m"), "bfloat16", 1234, tensor_parallel=2, data_parallel=4)
    assert a["tensor_parallel_size"] == 2 and a["data_parallel_size"] == 4 and a["add_bos_token"] is False
    assert a["trust_remote_code"] is False and a["pretrained"] == "/m"
    assert vllm_args(Path("/m"), "float16", 0)["tensor_parallel_size"] == 1


def test_vllm_missing_is_one_recorded_line(data_dir, qwen2, tmp_path):
    pytest.importorskip("lm_eval")
    from importlib.util import find_spec

    if find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the missing-package path cannot be exercised")
    out = tmp_path / "out"
    rc = main(["evaluate", "--suite", "flores-plus-v1", "--data", str(data_dir), "--languages", "eng_Latn,deu_Latn",
               "--model", str(qwen2), "--out-dir", str(out), "--limit", "2", "--backend", "vllm", "--device", "cpu"])
    res = _results(out, "tiny-qwen2", "flores-plus-v1")
    assert rc == 1 and res["status"] == "failed" and "vllm package is not installed" in res["error"]


@pytest.mark.gpu
def test_vllm_flores_on_gpu(data_dir, qwen2, tmp_path):
    """lm-eval's vllm model type on the same task configs (prompts, stop strings): runs where CUDA and vllm are."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("vllm")
    out = tmp_path / "out"
    rc = main(["evaluate", "--suite", "flores-plus-v1", "--data", str(data_dir), "--languages", "eng_Latn,deu_Latn",
               "--model", str(qwen2), "--out-dir", str(out), "--limit", "4", "--backend", "vllm",
               "--tensor-parallel", "1", "--dtype", "float32"])
    assert rc == 0
    res = _results(out, "tiny-qwen2", "flores-plus-v1")
    assert res["provenance"]["batch"]["backend"] == "vllm"
    assert any(r["metric"] == "chrf++" for r in res["rows"])


@pytest.mark.gpu
def test_bf16_own_backend_on_gpu(data_dir, qwen2, tmp_path):
    """Our backend in bf16 with its automatic token budget on CUDA; bits per byte close to float32 on CPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    got = {}
    for dtype, device in (("bfloat16", "cuda"), ("float32", "cpu")):
        out = tmp_path / dtype
        assert main(["evaluate", "--suite", "flores-plus-v1", "--data", str(data_dir), "--languages", "eng_Latn,deu_Latn",
                     "--model", str(qwen2), "--out-dir", str(out), "--limit", "4", "--dtype", dtype, "--device", device]) == 0
        res = _results(out, "tiny-qwen2", "flores-plus-v1")
        got[dtype] = next(r["value"] for r in res["rows"] if r["task"] == "lm:deu_Latn")
        if device == "cuda":
            assert res["provenance"]["batch"]["scoring_tokens"] > 0
    assert got["bfloat16"] == pytest.approx(got["float32"], rel=0.05)


def test_data_suite_needs_model(capsys):
    assert main(["evaluate", "--suite", "belebele-v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model PATH" in err[0]


def test_cka_command_on_flores_probe(data_dir, qwen2, gemma2, tmp_path):
    out = tmp_path / "cka.json"
    assert main(["cka", str(qwen2), str(qwen2), "--data", str(data_dir), "--languages", "eng_Latn,deu_Latn",
                 "--n", "6", "--tokens", "64", "--dtype", "float32", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["values"] == pytest.approx([1.0] * 3, abs=1e-9) and res["probe"]["minibatches"] > 1
    assert set(res["provenance"]["data"]["files"]) == {"flores_plus/dev/eng_Latn.parquet", "flores_plus/dev/deu_Latn.parquet"}
    assert main(["cka", str(qwen2), str(gemma2), "--data", str(data_dir), "--languages", "eng_Latn",
                 "--n", "6", "--device", "cpu", "--out", str(out)]) == 0
    assert all(v < 0.99 for v in json.loads(out.read_text())["values"])


def test_neurons_command_on_gemma2(data_dir, gemma2, tmp_path):
    out = tmp_path / "neurons.json"
    assert main(["neurons", str(gemma2), "--data", str(data_dir), "--languages", "eng_Latn,deu_Latn,fra_Latn",
                 "--n", "6", "--tokens", "64", "--dtype", "float32", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {r["layer"] for r in res["rows"]} == {1, 2} and {r["units"] for r in res["rows"]} == {64}
    assert sum(r["value"] for r in res["rows"]) == sum(len(v) for v in res["sets"].values()) > 0
    assert set(res["provenance"]["data"]["files"]) == {f"flores_plus/dev/{l}.parquet" for l in ("eng_Latn", "deu_Latn", "fra_Latn")}


def test_fetch_needs_a_pinned_revision(tmp_path, capsys):
    """`data fetch` never downloads an unpinned revision (nothing is fetched here: it stops before any request)."""
    assert main(["data", "fetch", "flores-plus-v1", "--data", str(tmp_path), "--languages", "eng_Latn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pinned revision" in err[0] and "--revision flores_plus=" in err[0]
    assert not any(tmp_path.iterdir())
