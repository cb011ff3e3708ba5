"""Checkpoint sources: local folders as they are; hub ids only when pinned to a 40-hex revision, resolved
through the Hugging Face cache (here pre-populated and offline: no network is touched)."""

import shutil

import pytest

from harness.sources import parse_hub_id, resolve_model

REV = "0123456789abcdef0123456789abcdef01234567"


def test_local_folder(tiny_models):
    assert resolve_model(str(tiny_models[0])) == tiny_models[0]


def test_unpinned_hub_id_is_refused():
    with pytest.raises(ValueError, match="must be pinned to a commit"):
        resolve_model("someorg/somemodel")
    with pytest.raises(FileNotFoundError, match="not a pinned hub id"):
        resolve_model("someorg/somemodel@main")
    assert parse_hub_id(f"org/name@{REV}") == ("org/name", REV)
    assert parse_hub_id("org/name@v1.0") is None


def test_pinned_hub_id_from_offline_cache(tmp_path, tiny_models, monkeypatch):
    cache = tmp_path / "hub"
    snap = cache / "models--someorg--tiny" / "snapshots" / REV
    shutil.copytree(tiny_models[0], snap)
    (cache / "models--someorg--tiny" / "refs").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    path = resolve_model(f"someorg/tiny@{REV}")
    assert (path / "model.safetensors").exists() and path.name == REV
    other = "f" * 40
    with pytest.raises(FileNotFoundError, match="cannot fetch the pinned revision"):
        resolve_model(f"someorg/tiny@{other}")
