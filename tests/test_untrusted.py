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


def _rewrite_header(d, edit):
    """Rewrite model.safetensors' JSON header with `edit(header)` and fix the manifest's sha256 to match."""
    import struct

    f = d / "model" / "model.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    header, data = edit(header, data)
    text = json.dumps(header).encode()
    f.write_bytes(struct.pack("<Q", len(text)) + text + data)
    m = yaml.safe_load((d / "submission.yaml").read_text())
    m["checkpoint"]["sha256"] = {"model.safetensors": store.sha256_file(f)}
    (d / "submission.yaml").write_text(yaml.safe_dump(m))


def _first(header):
    return sorted(k for k in header if k != "__metadata__")[0]


def _set(name, key, value):
    def edit(h, data):
        h[name][key] = value
        return h, data
    return edit


HEADER_CASES = {  # what a loader would refuse, refused by validate: (edit(header, data), words)
    "claims 2**60 bytes": (lambda h, data: (h | {_first(h): {**h[_first(h)], "data_offsets": [0, 2**60]}}, data),
                           "data_offsets span 1152921504606846976 bytes"),
    "shape out of step with bytes": (lambda h, data: (h | {_first(h): {**h[_first(h)], "shape": [2**30, 2**30]}}, data),
                                     "needs 4611686018427387904"),
    "overlapping tensors": (lambda h, data: (h | {k: {**v, "data_offsets": [0, v["data_offsets"][1] - v["data_offsets"][0]]}
                                                  for k, v in h.items() if k != "__metadata__"}, data), "without gap or overlap"),
    "data past the buffer": (lambda h, data: (h, data[:-4]), "the tensors cover"),
    "pickle dtype": (lambda h, data: (h | {_first(h): {**h[_first(h)], "dtype": "O"}}, data), "dtype 'O' is not accepted"),
    "integer dtype": (lambda h, data: (h | {_first(h): {**h[_first(h)], "dtype": "I32"}}, data), "dtype 'I32' is not accepted"),
    "unknown extra tensor": (lambda h, data: (h | {"backdoor.weight": {"dtype": "F32", "shape": [1],
                                                                       "data_offsets": [len(data), len(data) + 4]}}, data + b"\0" * 4),
                             "backdoor.weight: an unknown tensor"),
    "missing tensor": (lambda h, data: ({k: v for k, v in h.items() if k != "model.norm.weight"}, data), "model.norm.weight: missing"),
    "not an object": (lambda h, data: ([1, 2], data), "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_safetensors_header_checked_as_loading_would(tmp_path, tiny_models, case):
    from safetensors import safe_open

    edit, words = HEADER_CASES[case]
    d = checkpoint_submission(tmp_path, tiny_models[0])
    if case == "missing tensor":  # drop its bytes too, so only the name set is wrong
        def edit(h, data, _name="model.norm.weight"):
            b, e = h[_name]["data_offsets"]
            rest = {k: v for k, v in h.items() if k not in (_name, "__metadata__")}
            out = {"__metadata__": h["__metadata__"]}
            for k, v in rest.items():
                s, t = v["data_offsets"]
                shift = (e - b) if s >= e else 0
                out[k] = {**v, "data_offsets": [s - shift, t - shift]}
            return out, data[:b] + data[e:]
    _rewrite_header(d, edit)
    problems = validate_folder(d)
    assert len(problems) == 1 and words in problems[0], problems
    if case in ("integer dtype", "unknown extra tensor", "missing tensor"):
        return  # loadable files that babelmerge's policy refuses (not a LLaMA causal LM's floating weights)
    with pytest.raises(Exception):  # independent check: the safetensors library refuses the malformed ones too
        with safe_open(str(d / "model" / "model.safetensors"), "pt") as f:
            for k in f.keys():
                f.get_tensor(k)


def test_header_length_of_2_60_is_refused(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    f = d / "model" / "model.safetensors"
    f.write_bytes((2**60).to_bytes(8, "little") + f.read_bytes()[8:])
    m = yaml.safe_load((d / "submission.yaml").read_text())
    m["checkpoint"]["sha256"] = {"model.safetensors": store.sha256_file(f)}
    (d / "submission.yaml").write_text(yaml.safe_dump(m))
    problems = validate_folder(d)
    assert len(problems) == 1 and "exceeds the limit of 104857600 bytes" in problems[0], problems


def test_unsupported_architecture_and_bad_dimensions(tmp_path, tiny_models):
    d = checkpoint_submission(tmp_path, tiny_models[0])
    cfg = json.loads((d / "model" / "config.json").read_text())
    (d / "model" / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    assert any("model_type: 'gpt2' is not supported" in p for p in validate_folder(d))
    (d / "model" / "config.json").write_text(json.dumps({**cfg, "vocab_size": "300"}))
    assert any("vocab_size: must be an integer" in p for p in validate_folder(d))
    (d / "model" / "config.json").write_text(" " * (2**20 + 1))
    assert any("larger than 1048576 bytes" in p for p in validate_folder(d))


def test_tied_embeddings_may_omit_the_head(tmp_path, tokenizer_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, tie_word_embeddings=True, attention_bias=True)
    LlamaForCausalLM(cfg).save_pretrained(str(tmp_path / "m"), safe_serialization=True)
    assert validate_folder(checkpoint_submission(tmp_path, tmp_path / "m")) == []


def test_recipe_models_outside_the_submission_are_never_read(tmp_path, tiny_models):
    """run_recipe itself (not only validate) refuses a local path: nothing is read, nothing is cached."""
    from harness.merge import MergeError, run_recipe

    r = {"merge_method": "linear", "dtype": "float32", "models": [{"model": str(m), "parameters": {"weight": 1.0}}
                                                                  for m in tiny_models[:2]]}
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(r))
    with pytest.raises(MergeError, match=r"recipe.yml: models: '.*m0' is refused; name a family member"):
        run_recipe(tmp_path / "recipe.yml", preset="micro", seed=0, log=lambda *_: None)
    assert not (store.home() / "merges").exists()


def test_escape_makes_one_line():
    from harness.safety import escape

    raw = "a\nb\rc\td\x00e\x1bf\x7fg\x85h\u2028i\u202ej\u2066k\u200el\ud800m é 中"
    assert escape(raw) == "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x85h\\u2028i\\u202ej\\u2066k\\u200el\\ud800m é 中"
    assert len(escape(raw).splitlines()) == 1
