"""The negative cache keeps each row's vector through growth and compaction, and reads them back."""

from types import SimpleNamespace

import numpy as np

from sppfeat.detection.mining import NegativeStore


def test_rows_survive_growth_and_compaction(monkeypatch):
    monkeypatch.setattr(NegativeStore, "BLOCK", 7)  # many small blocks
    rng = np.random.default_rng(0)
    store, added = NegativeStore(3, 2), []
    image = SimpleNamespace(store_row=np.full(60, -1, np.int64))
    for _ in range(5):
        vectors = rng.normal(size=(int(rng.integers(1, 12)), 3)).astype(np.float16)
        windows = np.arange(len(added), len(added) + len(vectors))
        image.store_row[windows] = store.add(vectors, 0, windows)
        added.extend(vectors)
    added = np.array(added)
    np.testing.assert_array_equal(store.take(np.arange(len(added))), added)
    store.members = [np.array([3, 1, 20, len(added) - 1]), np.array([len(added) - 1, 5])]
    store.compact([image])
    kept = [1, 3, 5, 20, len(added) - 1]
    np.testing.assert_array_equal(store.take(np.arange(store.n)), added[kept])
    assert [store.owner[r][1] for r in store.members[0]] == [3, 1, 20, len(added) - 1]
    assert (image.store_row[kept] == np.arange(5)).all() and (np.delete(image.store_row, kept)[:len(added) - 5] == -1).all()


def test_scores_and_float32_rows_match_the_rows(monkeypatch):
    monkeypatch.setattr(NegativeStore, "BLOCK", 5)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(23, 4)).astype(np.float16)
    store = NegativeStore(4, 1)
    store.add(vectors, 0, np.arange(23))
    rows = np.array([22, 0, 7, 7, 13, 4, 19, 2, 11, 16, 5, 1])
    coef = rng.normal(size=4).astype(np.float32)
    expected = vectors[rows].astype(np.float64) @ coef + 0.5
    np.testing.assert_allclose(store.scores(rows, coef, 0.5), expected, rtol=1e-5, atol=1e-5)
    out = np.zeros((len(rows) + 2, 4), np.float32)
    store.take(rows, out[2:])
    np.testing.assert_array_equal(out[2:], vectors[rows].astype(np.float32))
    assert not out[:2].any()
