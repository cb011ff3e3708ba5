"""Where a checkpoint comes from: a local Hugging Face folder, or a hub id pinned to a 40-hex revision
(`org/name@<sha>`), fetched as safetensors and JSON only (no pickles, no code)."""

from __future__ import annotations

import os
import re
from pathlib import Path

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
