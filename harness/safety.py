"""Untrusted checkpoints, inspected before anything loads them (the safetensors format as specified in
huggingface/safetensors' README: an 8-byte little-endian header length, a JSON header, a byte buffer):
safetensors only (a pickle is refused by name and by its bytes before anything could unpickle it), no custom
code, no link or path out of the submission, size limits, sha256 checked, every tensor's dtype, shape and
byte range checked against the file, and the tensor names and shapes checked against the config. Also the one
escape for untrusted text in a problem line."""

from __future__ import annotations

import json
import math
import os
import struct
import unicodedata
from pathlib import Path

from . import store

MAX_BYTES = int(os.environ.get("BABELMERGE_MAX_CHECKPOINT_BYTES", 20 * 2**30))
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5", ".msgpack")
ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".md", ".model", ".yml", ".yaml")
MAX_HEADER = 100 * 2**20        # bytes of a safetensors JSON header (the safetensors library's own limit)
MAX_CONFIG = 2**20              # bytes of config.json, checked before it is parsed
MAX_DIM = 2**24                 # any one config dimension (vocabulary, width, MLP size, heads)
MAX_LAYERS = 1024               # num_hidden_layers
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}   # the floating dtypes a causal LM's weights may hold
LLAMA_TYPES = ("llama", "mistral")  # architectures whose tensor names are checked (the family's own is llama)
BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` with every character that could break or disguise a one-line message written as an escape:
    \\n \\r \\t, other C0/C1 controls and DEL, line and paragraph separators, bidi controls (U+061C, U+200E/F,
    U+202A-202E, U+2066-2069) and lone surrogates. Everything else is kept as it is."""
    out = []
    for ch in str(text):
        if ch in _SHORT:
            out.append(_SHORT[ch])
            continue
        o = ord(ch)
        if o in BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


class UnsafeCheckpoint(Exception):
    """One line: `file: field: what is wrong; what to do` (escaped)."""

    def __init__(self, line: str):
        super().__init__(escape(line))


def inside(root: Path, path: Path) -> bool:
    """Whether `path` (after resolving links and '..') lies inside `root`."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def _looks_pickled(f: Path) -> bool:
    """Pickle protocol 2+ starts with 0x80 and a protocol byte; torch.save's zip format starts with 'PK'."""
    with open(f, "rb") as fh:
        head = fh.read(2)
    return (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head == b"PK"


def _bad(f: Path, field: str, what: str) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(f"{f}: {field}: {what}; re-export the checkpoint with safetensors (save_pretrained)")


def safetensors_header(f: Path) -> dict[str, dict]:
    """Tensor name -> {dtype, shape, data_offsets} of one safetensors file, every entry checked the way loading
    would check it: header length at most MAX_HEADER and inside the file; a JSON object; string-to-string
    `__metadata__`; dtype in DTYPE_BYTES; shape a list of non-negative ints; data_offsets [begin, end] with
    end - begin = bytes(dtype) * prod(shape); the byte ranges tiling the data buffer exactly (no gap, no
    overlap, nothing past the end of the file). No tensor data is read."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise _bad(f, "-", "not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER:
            raise _bad(f, "-", f"corrupt safetensors header (length {n} exceeds the limit of {MAX_HEADER} bytes)")
        if n > size - 8:
            raise _bad(f, "-", f"corrupt safetensors header (length {n} runs past the end of the {size}-byte file)")
        text = fh.read(n)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad(f, "-", "corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise _bad(f, "-", "corrupt safetensors header (not a JSON object)")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _bad(f, "__metadata__", "must map strings to strings")
    spans = []
    for name, t in header.items():
        if not isinstance(t, dict) or set(t) != {"dtype", "shape", "data_offsets"}:
            raise _bad(f, name, "a tensor entry needs exactly dtype, shape and data_offsets")
        dtype, shape, off = t["dtype"], t["shape"], t["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise UnsafeCheckpoint(f"{f}: {name}: dtype {str(dtype)[:20]!r} is not accepted; save the weights as one of "
                                   f"{', '.join(DTYPE_BYTES)}")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(type(d) is int and 0 <= d <= 2**40 for d in shape)):
            raise _bad(f, name, "shape must be a list of at most 8 non-negative integers")
        if not (isinstance(off, list) and len(off) == 2 and all(type(x) is int for x in off) and 0 <= off[0] <= off[1]):
            raise _bad(f, name, "data_offsets must be [begin, end] with 0 <= begin <= end")
        need = DTYPE_BYTES[dtype] * math.prod(shape)
        if off[1] - off[0] != need:
            raise _bad(f, name, f"data_offsets span {off[1] - off[0]} bytes but {dtype} x {shape} needs {need}")
        spans.append((off[0], off[1], name))
    data, pos = size - 8 - n, 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise _bad(f, name, f"data_offsets start at byte {begin} where {pos} was expected (tensors must tile "
                                "the data buffer without gap or overlap)")
        pos = end
    if pos != data:
        raise _bad(f, "-", f"the tensors cover {pos} bytes of a {data}-byte data buffer")
    return header


def config_dims(config: dict, where: Path) -> dict[str, int]:
    """The dimensions of a LLaMA-style config (model_type in LLAMA_TYPES), each an integer in [1, MAX_DIM]
    (layers at most MAX_LAYERS): V vocab, H width, I MLP size, L layers, A heads, K key-value heads, D head size."""
    f = where / "config.json"
    mtype = config.get("model_type")
    if mtype not in LLAMA_TYPES:
        raise UnsafeCheckpoint(f"{f}: model_type: {str(mtype)[:40]!r} is not supported; babelmerge checks and loads "
                               f"LLaMA-style checkpoints (model_type {' or '.join(LLAMA_TYPES)})")
    keys = {"V": "vocab_size", "H": "hidden_size", "I": "intermediate_size", "L": "num_hidden_layers", "A": "num_attention_heads"}
    dims = {}
    for k, key in {**keys, "K": "num_key_value_heads", "D": "head_dim"}.items():
        v = config.get(key)
        if v is None and k in ("K", "D"):
            continue
        if type(v) is not int or not 1 <= v <= (MAX_LAYERS if k == "L" else MAX_DIM):
            raise UnsafeCheckpoint(f"{f}: {key}: must be an integer from 1 to {MAX_LAYERS if k == 'L' else MAX_DIM}; "
                                   "fix config.json")
        dims[k] = v
    dims.setdefault("K", dims["A"])
    dims.setdefault("D", dims["H"] // dims["A"])
    return dims


def expected_tensors(config: dict, dims: dict[str, int]) -> tuple[dict[str, list[int]], set[str]]:
    """Every tensor a LLaMA-style causal LM with these dimensions holds, name -> shape, and the names that may
    be absent (lm_head.weight when the embeddings are tied)."""
    V, H, I, L, A, K, D = (dims[k] for k in "VHILAKD")
    want = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H], "lm_head.weight": [V, H]}
    attn = {"q_proj": A * D, "k_proj": K * D, "v_proj": K * D}
    for i in range(L):
        p = f"model.layers.{i}."
        want |= {p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                 p + "self_attn.o_proj.weight": [H, A * D], p + "mlp.gate_proj.weight": [I, H],
                 p + "mlp.up_proj.weight": [I, H], p + "mlp.down_proj.weight": [H, I]}
        want |= {p + f"self_attn.{n}.weight": [rows, H] for n, rows in attn.items()}
        if config.get("attention_bias") is True:
            want |= {p + f"self_attn.{n}.bias": [rows] for n, rows in attn.items()} | {p + "self_attn.o_proj.bias": [H]}
        if config.get("mlp_bias") is True:
            want |= {p + "mlp.gate_proj.bias": [I], p + "mlp.up_proj.bias": [I], p + "mlp.down_proj.bias": [H]}
    optional = {"lm_head.weight"} if config.get("tie_word_embeddings") is True else set()
    return want, optional


def check_tensors(config: dict, shapes: dict[str, list[int]], where: Path) -> None:
    """The tensors must be exactly the config's LLaMA-style set: depth, then each name and shape, then nothing extra."""
    f = where / "config.json"
    dims = config_dims(config, where)
    layers = {int(k.split(".")[2]) for k in shapes if k.startswith("model.layers.") and k.split(".")[2].isdigit()}
    if layers and max(layers) + 1 != dims["L"]:
        raise UnsafeCheckpoint(f"{f}: num_hidden_layers: the config says {dims['L']} but the weights hold "
                               f"{max(layers) + 1} layers; fix config.json")
    want, optional = expected_tensors(config, dims)
    for name, shape in want.items():
        got = shapes.get(name)
        if got is None and name not in optional:
            raise UnsafeCheckpoint(f"{where}: {name}: missing from the weights but the config implies it; "
                                   "export every tensor of the model")
        if got is not None and list(got) != shape:
            raise UnsafeCheckpoint(f"{f}: {name}: has shape {got} but the config implies {shape}; "
                                   "fix config.json or the weights so they agree")
    extra = sorted(set(shapes) - set(want))
    if extra:
        raise UnsafeCheckpoint(f"{where}: {extra[0]}: an unknown tensor ({len(extra)} in all) that a LLaMA-style model "
                               "does not hold; remove it or fix config.json")


def _inspect_files(folder: Path, max_bytes: int) -> tuple[dict, list[Path]]:
    """The file-level checks of a checkpoint folder (no pickle, no code, no link, size, config.json without custom
    code, at least one .safetensors); returns the parsed config and the weight files."""
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
    if cfg_path.stat().st_size > MAX_CONFIG:
        raise UnsafeCheckpoint(f"{cfg_path}: -: larger than {MAX_CONFIG} bytes; a config is a few kilobytes, remove what is not one")
    try:
        config = json.loads(cfg_path.read_bytes())
    except (ValueError, RecursionError):
        raise UnsafeCheckpoint(f"{cfg_path}: -: not valid JSON; fix the syntax") from None
    if not isinstance(config, dict):
        raise UnsafeCheckpoint(f"{cfg_path}: -: must be a JSON object; write the model's config as one")
    for key in ("auto_map", "trust_remote_code"):
        if key in config:
            raise UnsafeCheckpoint(f"{cfg_path}: {key}: asks for custom code, which is never run; use a standard "
                                   "transformers architecture and remove the key")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise UnsafeCheckpoint(f"{folder}: -: no .safetensors weight file; export the model with safetensors")
    return config, weights


def _shapes(weights: list[Path]) -> dict[str, list[int]]:
    """Tensor name -> shape over a checkpoint's weight files, each header checked; a name in two files is refused."""
    shapes: dict[str, list[int]] = {}
    for w in weights:
        for name, meta in safetensors_header(w).items():
            if name in shapes:
                raise UnsafeCheckpoint(f"{w}: {name}: the tensor is also in another weight file; keep one copy")
            shapes[name] = meta["shape"]
    return shapes


def inspect_checkpoint(folder: Path, root: Path, sha256: dict[str, str] | None = None, max_bytes: int = MAX_BYTES) -> None:
    """Raise UnsafeCheckpoint with one line for the first problem of a checkpoint folder inside `root`."""
    if folder.is_symlink() or not inside(root, folder):
        raise UnsafeCheckpoint(f"{folder}: checkpoint.path: leaves the submission folder; put the checkpoint inside it")
    if not folder.is_dir():
        raise UnsafeCheckpoint(f"{folder}: checkpoint.path: no such folder; add the checkpoint folder to the submission")
    config, weights = _inspect_files(folder, max_bytes)
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
    check_tensors(config, _shapes(weights), folder)


def inspect_local_model(folder: Path, max_bytes: int = MAX_BYTES) -> dict[str, list[int]]:
    """A local checkpoint of any transformers architecture given on the command line, before anything loads it:
    the file-level checks of `inspect_checkpoint` and every safetensors header checked; the tensor set is not
    compared with a LLaMA-style config (Qwen2, Gemma2, ... are accepted). Returns tensor name -> shape."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise UnsafeCheckpoint(f"{folder}: -: not a checkpoint folder; pass a Hugging Face model folder (config.json, "
                               "*.safetensors)")
    _, weights = _inspect_files(folder, max_bytes)
    return _shapes(weights)
