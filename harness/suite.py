"""A versioned suite definition (suites/<id>.yaml): languages, tasks, sample counts, decoding, aggregation."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import store

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
DEFAULT_SUITE = "babel-mini-v2"

# Blocks that say how stored scores are read (prose, the aggregate, which tasks are live), not how they are
# computed: editing them changes the site, never a stored number, so they stay out of the suite's hash that
# results and cached units are keyed by.
DERIVED = ("sha256", "name", "description", "aggregate", "validity", "path")


def load_suite(name_or_path: str = DEFAULT_SUITE) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such suite; suites live in {SUITES_DIR} as <id>.yaml")
    suite = yaml.safe_load(path.read_text(encoding="utf-8"))
    suite["sha256"] = store.sha256_obj({k: v for k, v in suite.items() if k not in DERIVED})
    suite["path"] = str(path)  # where its data lock lives (harness/data.py); not part of the hash
    return suite


def with_languages(suite: dict, languages: list[str]) -> dict:
    """The suite restricted to a subset of its languages (`--languages`): a suite of its own, whose hash (what
    results and cached units are keyed by) says which languages were run."""
    if list(languages) == list(suite["languages"]):
        return suite
    out = {**suite, "languages": list(languages)}
    out["sha256"] = store.sha256_obj({k: v for k, v in out.items() if k not in DERIVED})
    return out



def results_name(suite: dict, preset: str | None = None, stem: str | None = None) -> str:
    """`<stem>.json` for the suite's own family preset, `<stem>+<preset>.json` otherwise (stem: the suite id)."""
    stem = stem or suite["id"]
    if "family" not in suite:  # suites on real data score any model, not a family preset: always <stem>.json
        return f"{stem}.json"
    preset = preset or suite["family"]["preset"]
    return f"{stem}.json" if preset == suite["family"]["preset"] else f"{stem}+{preset}.json"


def dev_variant(suite: dict) -> dict:
    """The suite scored on the corpus dev split instead of test (issue 15.3: methods are tuned on it): the same
    tasks, counts, prompts and validity rule; id `<id>-dev` and its own hash, so its results and cached units are
    never confused with the test suite's."""
    import copy

    dev = copy.deepcopy({k: v for k, v in suite.items() if k != "sha256"})
    dev["id"] = f"{suite['id']}-dev"
    for kind in ("lm", "mt"):
        dev["tasks"][kind]["split"] = "dev"
    dev["sha256"] = store.sha256_obj({k: v for k, v in dev.items() if k not in DERIVED})
    return dev
