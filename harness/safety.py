"""Untrusted checkpoints, inspected before anything loads them: safetensors only (a pickle is refused by
name and by its bytes before anything could unpickle it), no custom code, no link or path out of the
submission, a size limit, sha256 checked, and the config's dimensions checked against the tensors'
shapes read from the safetensors header alone."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from . import store

MAX_BYTES = int(os.environ.get("BABELMERGE_MAX_CHECKPOINT_BYTES", 20 * 2**30))
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5", ".msgpack")
ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".md", ".model", ".yml", ".yaml")
MAX_HEADER = 100 * 2**20


class UnsafeCheckpoint(Exception):
    """One line: `file: field: what is wrong; what to do`."""


def inside(root: Path, path: Path) -> bool:
    """Whether `path` (after resolving links and '..') lies inside `root`."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _looks_pickled(f: Path) -> bool:
    """Pickle protocol 2+ starts with 0x80 and a protocol byte; torch.save's zip format starts with 'PK'."""
    with open(f, "rb") as fh:
        head = fh.read(2)
    return (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head == b"PK"


def safetensors_header(f: Path) -> dict:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes); no tensor is read."""
    with open(f, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise UnsafeCheckpoint(f"{f}: -: not a safetensors file (too short); re-export with safetensors")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or n > f.stat().st_size - 8:
            raise UnsafeCheckpoint(f"{f}: -: corrupt safetensors header (length {n}); re-export the checkpoint")
        try:
            return json.loads(fh.read(n))
        except ValueError:
            raise UnsafeCheckpoint(f"{f}: -: corrupt safetensors header (not JSON); re-export the checkpoint") from None


def check_dimensions(config: dict, shapes: dict[str, list[int]], where: Path) -> None:
    """The config's vocabulary, width, depth and MLP size must match the tensors (LLaMA-style names)."""
    def want(name, shape):
        got = shapes.get(name)
        if got is not None and list(got) != list(shape):
            raise UnsafeCheckpoint(f"{where}: config.json: {name} has shape {got} but the config implies {shape}; "
                                   "fix config.json or the weights so they agree")

    v, h = config.get("vocab_size"), config.get("hidden_size")
    if v and h:
        want("model.embed_tokens.weight", [v, h])
        want("lm_head.weight", [v, h])
    if h and config.get("intermediate_size"):
        want("model.layers.0.mlp.gate_proj.weight", [config["intermediate_size"], h])
    layers = {int(k.split(".")[2]) for k in shapes if k.startswith("model.layers.") and k.split(".")[2].isdigit()}
    n = config.get("num_hidden_layers")
    if layers and n is not None and max(layers) + 1 != n:
        raise UnsafeCheckpoint(f"{where}: config.json: num_hidden_layers is {n} but the weights hold {max(layers) + 1} "
                               "layers; fix config.json")


def inspect_checkpoint(folder: Path, root: Path, sha256: dict[str, str] | None = None, max_bytes: int = MAX_BYTES) -> None:
    """Raise UnsafeCheckpoint with one line for the first problem of a checkpoint folder inside `root`."""
    if folder.is_symlink() or not inside(root, folder):
        raise UnsafeCheckpoint(f"{folder}: checkpoint.path: leaves the submission folder; put the checkpoint inside it")
    if not folder.is_dir():
        raise UnsafeCheckpoint(f"{folder}: checkpoint.path: no such folder; add the checkpoint folder to the submission")
    total = 0
    for f in sorted(folder.rglob("*")):
        if f.is_symlink():
            raise UnsafeCheckpoint(f"{f}: -: symbolic links are refused; copy the file into the submission")
        if not f.is_file():
            continue
        if f.suffix in PICKLE_SUFFIXES or (f.suffix not in ALLOWED_SUFFIXES and _looks_pickled(f)) or (
                f.suffix == ".safetensors" and _looks_pickled(f)):
            raise UnsafeCheckpoint(f"{f}: -: pickle-based weights are never loaded; convert to .safetensors "
                                   "(e.g. safetensors.torch.save_file) and remove this file")
        if f.suffix == ".py":
            raise UnsafeCheckpoint(f"{f}: -: code files are refused (no remote code); remove it")
        total += f.stat().st_size
        if total > max_bytes:
            raise UnsafeCheckpoint(f"{folder}: -: larger than the limit of {max_bytes} bytes; "
                                   "raise BABELMERGE_MAX_CHECKPOINT_BYTES if it is legitimate")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UnsafeCheckpoint(f"{cfg_path}: -: missing; a Hugging Face checkpoint needs its config.json")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError:
        raise UnsafeCheckpoint(f"{cfg_path}: -: not valid JSON; fix the syntax") from None
    if not isinstance(config, dict):
        raise UnsafeCheckpoint(f"{cfg_path}: -: must be a JSON object")
    for key in ("auto_map", "trust_remote_code"):
        if key in config:
            raise UnsafeCheckpoint(f"{cfg_path}: {key}: asks for custom code, which is never run; use a standard "
                                   "transformers architecture and remove the key")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise UnsafeCheckpoint(f"{folder}: -: no .safetensors weight file; export the model with safetensors")
    if sha256 is not None:
        listed = set(sha256)
        present = {w.name for w in weights}
        if listed != present:
            raise UnsafeCheckpoint(f"{folder}: checkpoint.sha256: lists {sorted(listed)} but the folder holds "
                                   f"{sorted(present)}; list every weight file with its sha256")
        for w in weights:
            if store.sha256_file(w) != sha256[w.name]:
                raise UnsafeCheckpoint(f"{w}: checkpoint.sha256: the file's sha256 differs from the manifest; "
                                       "recompute it with sha256sum or re-upload the file")
    shapes = {}
    for w in weights:
        for name, meta in safetensors_header(w).items():
            if name != "__metadata__":
                shapes[name] = meta.get("shape")
    check_dimensions(config, shapes, cfg_path.parent)
