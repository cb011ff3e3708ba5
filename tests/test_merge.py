"""mergekit through our bridge: a linear merge is the mean of its inputs; outputs are cached by content."""

import pytest
import torch
import yaml
from safetensors.torch import load_file

from harness.merge import model_refs, run_recipe


def _recipe(tmp_path, models, method="linear", **extra):
    r = {"merge_method": method, "dtype": "float32",
         "models": [{"model": str(m), "parameters": {"weight": 1.0}} for m in models], **extra}
    d = tmp_path / "sub"
    d.mkdir(exist_ok=True)
    (d / "recipe.yml").write_text(yaml.safe_dump(r))
    return d / "recipe.yml"


def test_linear_merge_is_the_mean(tmp_path, tiny_models):
    out, prov = run_recipe(_recipe(tmp_path, tiny_models), preset="micro", seed=0, log=lambda *_: None, allow_local=True)
    merged = load_file(str(out / "model.safetensors"))
    inputs = [load_file(str(m / "model.safetensors")) for m in tiny_models]
    assert set(merged) == set(inputs[0])
    for name, t in merged.items():
        expected = torch.stack([i[name] for i in inputs]).mean(0)
        assert torch.allclose(t, expected, atol=1e-6), name
    assert prov["mergekit"] and len(prov["constituents"]) == 3


def test_merge_is_cached_and_keyed_by_inputs(tmp_path, tiny_models):
    r1 = _recipe(tmp_path, tiny_models[:2])
    out1, _ = run_recipe(r1, preset="micro", seed=0, log=lambda *_: None, allow_local=True)
    mtime = (out1 / "model.safetensors").stat().st_mtime_ns
    out2, _ = run_recipe(r1, preset="micro", seed=0, log=lambda *_: None, allow_local=True)
    assert out1 == out2 and (out2 / "model.safetensors").stat().st_mtime_ns == mtime
    out3, _ = run_recipe(_recipe(tmp_path, tiny_models[1:]), preset="micro", seed=0, log=lambda *_: None, allow_local=True)
    assert out3 != out1


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        run_recipe(_recipe(tmp_path, [tmp_path / "nope", tmp_path / "nope2"]), preset="micro", seed=0, allow_local=True)


def test_model_refs_finds_every_reference():
    r = {"base_model": "a", "models": [{"model": "b"}, {"model": "a"}], "slices": [{"sources": [{"model": "c"}]}]}
    assert model_refs(r) == ["a", "b", "c"]
