"""The seeds' set-ups as data (issue 16.4): both scenarios load, unpinned hub ids and missing local checkpoints
are refused with one line, the grid expands to recipes mergekit accepts, and a recipe over two tiny Qwen2
fine-tunes of a tiny base merges and is probed (streamed CKA on a FLORES+-layout dev probe, gate activations)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness import pools as scenarios
from harness.cli import main
from realdata import make_arch_model, write_flores

FAKE = "0123456789abcdef0123456789abcdef01234567"


def copy(tmp_path: Path, name: str, pins: dict | None = None) -> Path:
    p = tmp_path / f"{name}.yaml"
    shutil.copy(scenarios.SCENARIOS_DIR / f"{name}.yaml", p)
    if pins is not None:
        (tmp_path / f"{name}.pins.json").write_text(json.dumps(pins))
    return p


def test_seed_a_facts_and_refusals(tmp_path, capsys):
    sc = scenarios.load_scenario("seed-a")
    assert len(sc["models"]) == 10 and sc["models"]["deu"]["hub"] == "HPLT/hplt2c_deu_checkpoints"
    assert sc["dtype"] == "float16" and sc["grid"]["linear"]["points"] == [{"weight": 0.1}]
    with pytest.raises(scenarios.ScenarioError) as e:
        scenarios.recipes(sc, grids=["linear"])
    assert "\n" not in str(e.value) and "models.ara.revision" in str(e.value) and "babelmerge pin seed-a" in str(e.value)
    rc = main(["scenario", "recipes", "seed-a", "--grid", "linear", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not pinned" in err[0]
    # pinned: the seed's own merge is one linear recipe, 10 models x 0.1, float16
    pinned = scenarios.load_scenario(str(copy(tmp_path, "seed-a", {n: FAKE for n in sc["models"]})))
    (r,) = scenarios.recipes(pinned, grids=["linear"]).values()
    assert r["merge_method"] == "linear" and r["dtype"] == "float16" and len(r["models"]) == 10
    assert {m["parameters"]["weight"] for m in r["models"]} == {0.1} and r["models"][0]["model"].endswith("@" + FAKE)
    with pytest.raises(scenarios.ScenarioError, match="ties needs a base model"):
        scenarios.recipes(pinned, grids=["ties"])


def test_seed_b_local_checkpoints_and_mergekit_accepts(tmp_path):
    from mergekit.config import MergeConfiguration

    sc = scenarios.load_scenario("seed-b")
    assert sc["models"]["qwen"]["hub"] == "Qwen/Qwen2.5-3B-Instruct" and sc["base"] == "qwen"
    assert sorted(n for n in sc["models"] if n != "qwen") == sorted(["en-hi", "en-bn", "en-ta", "en-te", "en-fr", "en-de", "en-ar", "en-uk"])
    pinned = scenarios.load_scenario(str(copy(tmp_path, "seed-b", {"qwen": FAKE})))
    with pytest.raises(scenarios.ScenarioError, match="--checkpoints DIR"):
        scenarios.recipes(pinned)
    ck = tmp_path / "ck"
    for n, m in sc["models"].items():
        if "path" in m:
            (ck / m["path"]).mkdir(parents=True)
            if n != "en-uk":
                (ck / m["path"] / "config.json").write_text("{}")
    with pytest.raises(scenarios.ScenarioError, match=r"seed-b/en-uk: no checkpoint"):
        scenarios.recipes(pinned, ck)
    (ck / "seed-b/en-uk/config.json").write_text("{}")
    got = scenarios.recipes(pinned, ck)
    assert len(got) == 3 + 3 + 3 + 2
    for r in got.values():
        MergeConfiguration.model_validate(r)  # mergekit's own schema accepts every grid point
    assert got["sce-0"]["parameters"] == {"select_topk": 0.1} and "parameters" not in got["sce-0"]["models"][0]
    assert got["ties-1"]["models"][0]["parameters"] == {"weight": 0.25, "density": 0.5}


def test_tiny_scenario_merges_and_probes(tmp_path, tokenizer_dir):
    """A Seed-B-shaped scenario on tiny Qwen2 checkpoints: recipe -> mergekit -> streamed CKA and gates."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from harness.data import DataDir
    from harness.merge import run_recipe
    from harness.similarity.compute import _forward, start_token
    from harness.similarity.stream import flores_probe, stream_cka

    ck = tmp_path / "ck"
    for name, seed in (("base", 0), ("en-de", 1), ("en-fr", 2)):
        make_arch_model(ck / name, tokenizer_dir, "qwen2", seed=seed)
    sc_path = tmp_path / "tiny.yaml"
    sc_path.write_text(yaml.safe_dump({
        "id": "tiny", "dtype": "float32", "base": "base",
        "models": {"base": {"path": "base"}, "en-de": {"path": "en-de"}, "en-fr": {"path": "en-fr"}},
        "grid": {"task_arithmetic": {"method": "task_arithmetic", "needs_base": True, "points": [{"weight": 0.5}]}}}))
    assert main(["scenario", "recipes", str(sc_path), "--checkpoints", str(ck), "--out", str(tmp_path / "r")]) == 0
    merged, prov = run_recipe(tmp_path / "r" / "task_arithmetic-0.yml", "micro", seed=0, allow_local=True)
    assert prov["recipe"]["merge_method"] == "task_arithmetic"
    # task arithmetic at 0.5 each: base + 0.5 (a - base) + 0.5 (b - base) = (a + b) / 2, tensor by tensor
    from safetensors.torch import load_file
    w = {n: load_file(str(ck / n / "model.safetensors")) for n in ("en-de", "en-fr")}
    m = load_file(str(merged / "model.safetensors"))
    key = "model.layers.0.mlp.gate_proj.weight"
    assert (m[key] - (w["en-de"][key] + w["en-fr"][key]) / 2).abs().max() < 1e-5

    data = DataDir(write_flores(tmp_path / "data", ["eng_Latn", "deu_Latn"]))
    texts = flores_probe(data, ["eng_Latn", "deu_Latn"], n=6)
    assert len(texts) == 12 and set(data.read) == {"flores_plus/dev/eng_Latn.parquet", "flores_plus/dev/deu_Latn.parquet"}
    tok = PreTrainedTokenizerFast.from_pretrained(str(merged))
    seqs = [[start_token(tok)] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    a = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    b = AutoModelForCausalLM.from_pretrained(str(ck / "en-de")).eval()
    *_, acc = stream_cka(a, b, seqs, tokens=64)
    vals = acc.result()
    assert len(vals) == 3 and all(0 < v < 1 for v in vals)  # embeddings + 2 blocks; related but not identical
    gates = next(_forward(a, seqs[:1], "cpu"))[2]
    assert len(gates) == 2 and gates[0].shape[1] == a.config.intermediate_size
