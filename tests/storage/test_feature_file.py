"""Feature files: compressed rows that HDF5 itself reads back exactly, and the threaded row reader."""

import h5py
import numpy as np
import pytest

from conftest import damage_chunk
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


@pytest.mark.parametrize("threaded_reader", [True, False])
def test_a_damaged_chunk_is_a_one_line_error_naming_the_file_and_rows(tmp_path, monkeypatch, threaded_reader):
    """The second of three chunks damaged: reading its rows names them (not a zlib or HDF5 traceback),
    whether sppfeat or HDF5 inflates the chunks; the other chunks still read back exactly."""
    import sppfeat.storage.feature_file as feature_file

    if not threaded_reader:
        monkeypatch.setattr(feature_file, "direct_readable", lambda data: False)
    rows = np.maximum(np.random.default_rng(0).normal(size=(200, 3000)), 0).astype(np.float32)
    path = tmp_path / "f.h5"
    with FeatureWriter(path, dim=3000, dtype="float32", class_names=["a"], record={}, placement={}) as writer:
        writer.append([f"{i}.jpg" for i in range(200)], [0] * 200, [[1, 1]] * 200, rows)
    assert h5py.File(path, "r")["features"].chunks[0] == 87  # chunks: rows 0-86, 87-173, 174-199
    damage_chunk(path, 1)
    ff = open_features(path)
    with pytest.raises(ValueError) as error:
        ff.read_features()
    message = str(error.value)
    assert message.startswith(f"{path} is damaged: its features rows ") and "\n" not in message
    # HDF5 reads 512 rows at a time (here all 200): it names the block it could not read
    assert f"rows {'87-173' if threaded_reader else '0-199'} of 200 cannot be read" in message
    picked = np.r_[0:87, 174:200] if threaded_reader else np.arange(87)
    np.testing.assert_array_equal(ff.read_features(picked), rows[picked])
