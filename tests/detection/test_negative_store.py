"""The negative cache keeps each row's vector (to within its 8-bit step) through growth and
compaction, and reads them back."""

from types import SimpleNamespace

import numpy as np

from sppfeat.detection.negatives import NegativeStore


def close_to(got, vectors):
    """Each row within half its own step (range / 255) of the original, plus float rounding."""
    step = (vectors.max(axis=1, keepdims=True) - vectors.min(axis=1, keepdims=True)) / 255
    assert (np.abs(got - vectors) <= step / 2 * 1.0001 + 1e-7).all()


def test_rows_survive_growth_and_compaction(monkeypatch):
    monkeypatch.setattr(NegativeStore, "BLOCK", 7)  # many small blocks
    rng = np.random.default_rng(0)
    store, added = NegativeStore(300, 2), []
    image = SimpleNamespace(store_row=np.full(60, -1, np.int64))
    for _ in range(5):
        vectors = rng.normal(size=(int(rng.integers(1, 12)), 300)).astype(np.float32)
        windows = np.arange(len(added), len(added) + len(vectors))
        image.store_row[windows] = store.add(vectors, 0, windows)
        added.extend(vectors)
    added = np.array(added)
    first = store.take(np.arange(len(added)))
    close_to(first, added)
    store.members = [np.array([3, 1, 20, len(added) - 1]), np.array([len(added) - 1, 5])]
    store.compact([image])
    kept = [1, 3, 5, 20, len(added) - 1]
    np.testing.assert_array_equal(store.take(np.arange(store.n)), first[kept])  # compaction copies codes as they are
    assert [store.owner[r][1] for r in store.members[0]] == [3, 1, 20, len(added) - 1]
    assert (image.store_row[kept] == np.arange(5)).all() and (np.delete(image.store_row, kept)[:len(added) - 5] == -1).all()


def test_constant_rows_and_zeros_come_back_exactly():
    store = NegativeStore(4, 1)
    vectors = np.array([[0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, 0.25, 0, 1]], np.float32)
    store.add(vectors, 0, np.arange(3))
    got = store.take(np.arange(3))
    np.testing.assert_array_equal(got[:2], vectors[:2])
    assert got[2, 0] == 0 and got[2, 2] == 0 and got[2, 3] == np.float32(1)
    assert len(store.add(np.zeros((0, 4), np.float32), 0, np.zeros(0, int))) == 0


def test_scores_and_float32_rows_match_the_rows(monkeypatch):
    monkeypatch.setattr(NegativeStore, "BLOCK", 5)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(23, 40)).astype(np.float32)
    store = NegativeStore(40, 1)
    store.add(vectors, 0, np.arange(23))
    rows = np.array([22, 0, 7, 7, 13, 4, 19, 2, 11, 16, 5, 1])
    coef = rng.normal(size=40).astype(np.float32)
    stored = store.take(rows)
    close_to(stored, vectors[rows])
    np.testing.assert_allclose(store.scores(rows, coef, 0.5), stored.astype(np.float64) @ coef + 0.5, rtol=1e-5,
                               atol=1e-5)
    out = np.zeros((len(rows) + 2, 40), np.float32)
    store.take(rows, out[2:])
    np.testing.assert_array_equal(out[2:], stored)
    assert not out[:2].any()


def test_trim_keeps_the_rows_with_the_hardest_negatives(monkeypatch):
    monkeypatch.setattr(NegativeStore, "BLOCK", 4)
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    store = NegativeStore(8, 3)
    image = SimpleNamespace(store_row=store.add(vectors, 0, np.arange(30)))
    before = store.take(np.arange(30))
    for k in range(3):
        store.members[k] = np.sort(rng.choice(30, 12, replace=False))
        store.member_scores[k] = rng.normal(size=12).astype(np.float32)
    pairs = {(int(r), k): float(s) for k in range(3) for r, s in zip(store.members[k], store.member_scores[k])}
    held = {r for r, _ in pairs}
    hardest = {r: max(s for (row, _), s in pairs.items() if row == r) for r in held}  # brute force
    kept = sorted(held, key=lambda r: -hardest[r])[:10]
    margin = min(hardest[r] for r in kept)
    assert store.trim(10, [image]) == 30 - 10 and store.n == 10
    assert sorted(window for _, window in store.owner) == sorted(kept)
    for k in range(3):  # each class keeps its own pairs above the common margin, with their scores
        got = {(store.owner[r][1], k): float(s) for r, s in zip(store.members[k], store.member_scores[k])}
        assert got == {p: s for p, s in pairs.items() if p[1] == k and s >= margin}
    np.testing.assert_array_equal(store.take(np.arange(10)), before[sorted(kept)])
    assert (image.store_row[sorted(kept)] == np.arange(10)).all()
    assert store.trim(10, [image]) == 0  # within the limit: nothing goes


def test_cached_flags_follow_the_class_members():
    """Each image's cached[w, k] is set exactly where some row of class k's cache is its window w
    (against a loop over the members, one pair at a time)."""
    from sppfeat.detection.flags import Flags
    from sppfeat.detection.mining import _flag_cached

    rng = np.random.default_rng(3)
    sizes, n_classes = [40, 0, 25, 60], 3
    images = [SimpleNamespace(cached=Flags(rng.random((w, n_classes)) < 0.5)) for w in sizes]  # stale flags
    owner = [(i, int(w)) for i, size in enumerate(sizes) for w in rng.choice(size, size // 2, replace=False)]
    store = SimpleNamespace(owner=owner, members=[np.sort(rng.choice(len(owner), n, replace=False))
                                                  for n in (10, 0, len(owner))])
    expected = [np.zeros((w, n_classes), bool) for w in sizes]
    for k, members in enumerate(store.members):
        for row in members:
            image, window = owner[row]
            expected[image][window, k] = True
    _flag_cached(images, store)
    for image, want in zip(images, expected):
        np.testing.assert_array_equal(np.asarray(image.cached), want)
