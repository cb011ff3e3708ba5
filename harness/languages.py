"""What the analysis knows about the suite's languages: script, genus (for 'related' languages), and the
typological distance between two languages from URIEL (Littell et al. 2017, "URIEL and lang2vec"), read
from the data file that the PyPI package `lang2vec` ships. The module `lang2vec` is never imported: it needs
pkg_resources (gone from current setuptools), and the package's console script `lang2vec.py` shadows it
whenever an entry point runs with the scripts folder first on sys.path. The file is found through the
installed distribution's RECORD and read as plain arrays (no pickle)."""

from __future__ import annotations

import functools
import itertools
from importlib import metadata
from pathlib import Path

import numpy as np

ISO3 = {"en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "ru": "rus", "ar": "arb"}
SCRIPT = {"en": "Latn", "de": "Latn", "fr": "Latn", "es": "Latn", "it": "Latn", "ru": "Cyrl", "ar": "Arab"}
# WALS genus (Dryer and Haspelmath 2013): languages of one genus are 'related'
GENUS = {"en": "Germanic", "de": "Germanic", "fr": "Romance", "es": "Romance", "it": "Romance", "ru": "Slavic", "ar": "Semitic"}
# URIEL's k-NN-completed typological vectors (no missing values): syntax, phonology and phoneme inventory
URIEL_SETS = ("S_", "P_", "INV_")


URIEL_FILE = "lang2vec/data/feature_predictions.npz"  # as listed in lang2vec 1.1.2's RECORD


def uriel_file() -> Path:
    """The installed copy of lang2vec's URIEL feature predictions, located without importing any module."""
    try:
        dist = metadata.distribution("lang2vec")
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("lang2vec is not installed; run scripts/setup.sh (it is pinned in constraints.txt)") from None
    if not any(str(f) == URIEL_FILE for f in dist.files or []):
        raise FileNotFoundError(f"lang2vec {dist.version} does not ship {URIEL_FILE}; install the pinned lang2vec==1.1.2")
    return Path(dist.locate_file(URIEL_FILE))


@functools.lru_cache(maxsize=None)
def _uriel() -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    with np.load(uriel_file(), allow_pickle=False) as z:
        langs, feats, data = z["langs"], z["feats"], z["data"][:, :, 0]
    return {str(l): i for i, l in enumerate(langs)}, feats, data


def uriel_vector(lang: str) -> np.ndarray:
    """The language's URIEL syntax + phonology + inventory vector (values in [0, 1])."""
    index, feats, data = _uriel()
    code = ISO3.get(lang, lang)
    if code not in index:
        raise KeyError(f"language '{lang}' ({code}) is not in URIEL")
    keep = np.array([str(f).startswith(URIEL_SETS) for f in feats])
    return data[index[code], keep].astype(np.float64)


@functools.lru_cache(maxsize=None)
def typological_distance(a: str, b: str) -> float:
    """Cosine distance between the two languages' URIEL vectors (lang2vec's definition of feature distance);
    memoised: the site asks for the same few pairs once per merge."""
    u, v = uriel_vector(a), uriel_vector(b)
    return float(1.0 - u @ v / np.sqrt((u @ u) * (v @ v)))


def relation(lang: str, target: str) -> str:
    """How `lang` relates to a fine-tuning target: 'supervised' (the target itself), 'related' (same genus),
    'unsupervised' (neither)."""
    if lang == target:
        return "supervised"
    return "related" if GENUS.get(lang) == GENUS.get(target) else "unsupervised"


def set_covariates(langs: list[str]) -> dict[str, float]:
    """Covariates of a set of merged languages: mean pairwise URIEL distance and the share of pairs in
    different scripts (NaN for fewer than two distinct languages)."""
    pairs = list(itertools.combinations(sorted(set(langs)), 2))
    if not pairs:
        return {"uriel_distance": float("nan"), "script_mismatch": float("nan")}
    return {"uriel_distance": float(np.mean([typological_distance(a, b) for a, b in pairs])),
            "script_mismatch": float(np.mean([SCRIPT[a] != SCRIPT[b] for a, b in pairs]))}
