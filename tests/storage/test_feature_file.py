"""Feature files: compressed rows that HDF5 itself reads back exactly, and the threaded row reader."""

import h5py
import numpy as np
import pytest

from sppfeat.storage.feature_file import FeatureWriter, open_features


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_compressed_rows_round_trip_through_hdf5_and_the_threaded_reader(tmp_path, dtype):
    rng = np.random.default_rng(0)
    n, dim = 103, 3000  # chunks of 87 (float32) or 174 (float16) rows: the last one partial
    rows = np.maximum(rng.normal(size=(n, dim)), 0).astype(dtype)  # mostly zeros, as ReLU maps pooled
    path = tmp_path / "f.h5"
    with FeatureWriter(path, dim=dim, dtype=dtype, class_names=["a"], record={"dtype": dtype}, placement={},
                       threads=3) as writer:
        for start in range(0, n, 10):  # appends that do not line up with chunks
            block = rows[start:start + 10]
            writer.append([f"{i}.jpg" for i in range(start, start + len(block))], [0] * len(block),
                          [[1, 1]] * len(block), block)
    with h5py.File(path, "r") as f:
        data = f["features"]
        assert data.compression == "gzip" and data.chunks[1] == dim and data.shape == (n, dim)
        np.testing.assert_array_equal(data[()], rows)  # HDF5's own deflate filter reads our chunks
        assert data.id.get_storage_size() < 0.8 * rows.nbytes
    ff = open_features(path)
    picked = rng.permutation(n)[:40]
    np.testing.assert_array_equal(ff.read_features(picked), rows[picked].astype(np.float32))
    np.testing.assert_array_equal(ff.read_features(threads=1), rows.astype(np.float32))
    assert ff.stored_bytes == h5py.File(path, "r")["features"].id.get_storage_size()
