"""The negative cache keeps each row's vector through growth and compaction."""

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
