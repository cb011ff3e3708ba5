"""Where a checkpoint comes from and how it is loaded: a local Hugging Face folder, or a hub id pinned to a
40-hex revision (`org/name@<sha>`), fetched as safetensors and JSON only (no pickles, no code); loaded from
safetensors only, without remote code, with finite weights."""

from __future__ import annotations

import os
import re
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


class ModelFault(Exception):
    """A model that cannot be scored: one line saying what and what to do."""


_HUB = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)@(?P<rev>[0-9a-f]{40})$")
ALLOW = ["*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json"]


def parse_hub_id(ref: str) -> tuple[str, str] | None:
    m = _HUB.match(ref)
    return (m["repo"], m["rev"]) if m else None


def resolve_model(ref: str) -> Path:
    """A local folder as it is; `org/name@<40-hex>` through the hub cache (offline when HF_HUB_OFFLINE=1)."""
    p = Path(ref)
    if p.exists():
        if not p.is_dir():
            raise FileNotFoundError(f"{ref}: not a folder; pass a Hugging Face checkpoint folder")
        return p
    hub = parse_hub_id(ref)
    if hub is None:
        if "/" in ref and "@" not in ref:
            raise ValueError(f"{ref}: a hub id must be pinned to a commit: write it as {ref}@<40-hex revision>")
        raise FileNotFoundError(f"{ref}: no such folder, and not a pinned hub id (org/name@<40-hex revision>)")
    from huggingface_hub import snapshot_download

    repo, rev = hub
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    try:
        return Path(snapshot_download(repo_id=repo, revision=rev, allow_patterns=ALLOW, local_files_only=offline))
    except Exception as e:  # the hub client raises many types; the line names the model and the fix
        raise FileNotFoundError(f"{ref}: cannot fetch the pinned revision ({type(e).__name__}); "
                                "check the id and revision, or pre-populate the Hugging Face cache for offline use") from None


def load_model(path: Path, device: str, dtype: str):
    """A local Hugging Face causal LM, from safetensors only and never with remote code; weights must be finite."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False,
                                                     dtype=getattr(torch, dtype)).to(device).eval()
        tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise ModelFault(f"{path}: cannot load the model ({str(e).splitlines()[0][:200]}); "
                         "it must be a Hugging Face causal-LM folder with safetensors weights") from None
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ModelFault(f"{path}: weight {name} contains NaN or inf; the checkpoint is corrupt, re-export it")
    return model, tok
