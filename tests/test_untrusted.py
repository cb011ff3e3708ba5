"""Untrusted checkpoints: refused before anything could unpickle, run code or follow a path out of the
submission; sizes, hashes and dimensions checked; a checkpoint submission is scored only when it passes."""

import json
import os
import pickle
import shutil

import pytest
import yaml
from safetensors.torch import load_file, save_file

from harness import store
from harness.safety import MAX_BYTES, UnsafeCheckpoint, inspect_checkpoint
from harness.validation import validate_folder

REF = "family:babel-mini/"


class Planted:
    """Unpickling this creates the marker file: proof that something loaded the pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def checkpoint_submission(tmp_path, model_dir, name="ck-sub"):
    d = tmp_path / name
    shutil.copytree(model_dir, d / "model")
    manifest = {"id": name, "title": "A submitted checkpoint", "authors": ["Eve"], "contact": "eve@example.org",
                "method": "my-merge", "kind": "checkpoint", "arm": "mt", "license": "MIT",
                "constituents": [REF + "mt-en-fr", REF + "mt-en-es"], "base_model": REF + "mixed",
                "checkpoint": {"path": "model", "sha256": {"model.safetensors": store.sha256_file(d / "model" / "model.safetensors")}}}
    (d / "submission.yaml").write_text(yaml.safe_dump(manifest))
    return d


def test_good_checkpoint_passes(tmp_path, tiny_models):
    assert validate_folder(checkpoint_submission(tmp_path, tiny_models[0])) == []


def test_planted_pickle_is_never_loaded(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    marker = tmp_path / "PWNED"
    (d / "model" / "pytorch_model.bin").write_bytes(pickle.dumps(Planted(str(marker))))
    problems = validate_folder(d)
    assert any("pytorch_model.bin: -: pickle-based weights are never loaded" in p for p in problems), problems
    # the evaluation path refuses it at the gate, and nothing unpickles it on the way
    from harness.pipeline import Context, stage_merges

    (tmp_path / "subs").mkdir()
    shutil.move(str(d), tmp_path / "subs" / d.name)
    errs = []
    ctx = Context(submissions_dir=tmp_path / "subs", references_dir=tmp_path / "refs", log=lambda *_: None, err=errs.append)
    merged = stage_merges(ctx)
    assert merged == {} and len(errs) == 1 and "pickle-based weights" in errs[0] and ctx.refused == errs
    assert not marker.exists() and not (tmp_path / "subs" / "ck-sub" / "results").exists()


def test_pickle_disguised_as_safetensors(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    marker = tmp_path / "PWNED2"
    (d / "model" / "extra.safetensors").write_bytes(pickle.dumps(Planted(str(marker)), protocol=4))
    assert any("pickle-based weights" in p for p in validate_folder(d))
    assert not marker.exists()


def test_custom_code_refused(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    cfg = json.loads((d / "model" / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (d / "model" / "config.json").write_text(json.dumps(cfg))
    assert any("auto_map: asks for custom code" in p for p in validate_folder(d))
    (d / "model" / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "auto_map"}))
    (d / "model" / "modeling_evil.py").write_text("import os\n")
    assert any("code files are refused" in p for p in validate_folder(d))


def test_links_and_escaping_paths_refused(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    (d / "model" / "notes.txt").symlink_to(outside)
    assert any("symbolic links are refused" in p for p in validate_folder(d))
    (d / "model" / "notes.txt").unlink()
    m = yaml.safe_load((d / "submission.yaml").read_text())
    m["checkpoint"]["path"] = "../../" + tiny_models[0].parent.name + "/" + tiny_models[0].name
    (d / "submission.yaml").write_text(yaml.safe_dump(m))
    assert any("leaves the submission folder" in p for p in validate_folder(d))
    m["checkpoint"]["path"] = "model-link"
    (d / "model-link").symlink_to(tiny_models[0], target_is_directory=True)
    (d / "submission.yaml").write_text(yaml.safe_dump(m))
    assert any("leaves the submission folder" in p for p in validate_folder(d))


def test_size_limit_is_configurable(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    assert validate_folder(d, max_bytes=1000)[0].endswith("raise BABELMERGE_MAX_CHECKPOINT_BYTES if it is legitimate")
    assert validate_folder(d, max_bytes=MAX_BYTES) == []


def test_sha256_checked(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    tensors = load_file(str(d / "model" / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(d / "model" / "model.safetensors"), metadata={"format": "pt"})
    assert any("sha256 differs from the manifest" in p for p in validate_folder(d))


def test_config_dimensions_must_match_tensors(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    cfg = json.loads((d / "model" / "config.json").read_text())
    (d / "model" / "config.json").write_text(json.dumps({**cfg, "hidden_size": cfg["hidden_size"] * 2}))
    assert any("config.json: model.embed_tokens.weight: has shape" in p for p in validate_folder(d))
    (d / "model" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": cfg["num_hidden_layers"] + 1}))
    assert any("config.json: num_hidden_layers: the config says" in p for p in validate_folder(d))


def test_truncated_header_is_one_line(tmp_path, tiny_models):
    d = tmp_path / "ck"
    shutil.copytree(tiny_models[0], d)
    (d / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(UnsafeCheckpoint, match="corrupt safetensors header"):
        inspect_checkpoint(d, tmp_path)


def test_merge_errors_are_one_line(tmp_path, tiny_models):
    from harness.merge import MergeError, run_recipe

    r = {"merge_method": "slerp", "base_model": str(tiny_models[0]), "parameters": {"t": 0.5}, "dtype": "float32",
         "models": [{"model": str(m)} for m in tiny_models]}
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(r))
    with pytest.raises(MergeError) as e:
        run_recipe(tmp_path / "recipe.yml", preset="micro", seed=0, log=lambda *_: None, allow_local=True)
    assert "\n" not in str(e.value) and "mergekit failed" in str(e.value) and "recipe.yml: merge_method:" in str(e.value)
