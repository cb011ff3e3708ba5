"""Model identity, in one place: what a stored result is reused for.

A family member is identified by its recipe (member definition, preset, tokenizer recipe, parent's identity,
family builder version), never by its weight bytes, which drift in the last bits between machines; a recipe
merge by its recipe with each referenced model's identity, mergekit's version and the seed; a submitted
checkpoint by its content (sha256 over its weight files' sha256s). Weight hashes are still recorded with
every result (`weight_hashes`, `model_hash`), as a record of which bytes produced the numbers."""

from __future__ import annotations

from pathlib import Path

from . import store

IDENTITY_VERSION = "identity-v1"  # bump when what an identity is taken over changes


def weight_hashes(path: Path) -> dict[str, str]:
    """sha256 of every *.safetensors file in a checkpoint folder, by file name."""
    return {f.name: store.sha256_file(f) for f in sorted(Path(path).glob("*.safetensors"))}


def content_hash(hashes: dict[str, str]) -> str:
    """One content hash from a {weight file: sha256} table (a manifest's declared hashes, or computed ones)."""
    return store.sha256_obj(hashes)


def model_hash(path: Path) -> str:
    """One content hash for a checkpoint: sha256 over its weight files' sha256s."""
    hashes = weight_hashes(path)
    if not hashes:
        raise FileNotFoundError(f"{path}: no .safetensors weight file; a checkpoint must hold model.safetensors")
    return content_hash(hashes)


def family_identity(member: dict, preset: dict, tokenizer_key: str, parent: str | None, family_version: str) -> str:
    """A family member's identity: sha256 over its recipe (the member spec, the preset, the tokenizer's recipe
    key, the parent's identity, the builder's version). Training it again anywhere gives the same identity."""
    return store.sha256_obj({"kind": "family", "member": member, "preset": preset, "tokenizer": tokenizer_key,
                             "parent": parent, "family": family_version, "v": IDENTITY_VERSION})


def merge_identity(recipe: dict, models: dict[str, str], mergekit: str, seed: int, extra: dict | None = None) -> str:
    """A recipe merge's identity: its recipe as written (family references unresolved), the identity of every
    model it names (ref -> identity), mergekit's version and the merge seed; `extra` (when given) is whatever
    else the merge's code depends on, such as the sha256 of a method module registered with mergekit."""
    obj = {"kind": "merge", "recipe": recipe, "models": dict(sorted(models.items())), "mergekit": mergekit, "seed": seed,
           "v": IDENTITY_VERSION}
    return store.sha256_obj(obj if extra is None else {**obj, "extra": extra})


def checkpoint_identity(hashes: dict[str, str]) -> str:
    """A checkpoint's identity is its content: the same value as `model_hash` of the folder holding those files."""
    return content_hash(hashes)
