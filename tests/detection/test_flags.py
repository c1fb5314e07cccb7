"""Flags (a W×K boolean matrix in bits) against a plain numpy bool array under the same operations."""

import numpy as np
import pytest

from sppfeat.detection.flags import Flags


@pytest.mark.parametrize("shape", [(0, 20), (1, 1), (37, 8), (500, 20), (64, 21)])
def test_flags_behave_as_a_bool_array(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    reference = rng.random(shape) < 0.3
    flags = Flags(reference)
    assert len(flags) == shape[0] and flags.shape == shape and flags.bits.nbytes == shape[0] * -(-shape[1] // 8)
    np.testing.assert_array_equal(np.asarray(flags), reference)
    for _ in range(20):
        rows = np.sort(rng.choice(shape[0], rng.integers(0, shape[0] + 1), replace=False)) if shape[0] else []
        np.testing.assert_array_equal(flags.rows(rows), reference[rows])
        values = rng.random((len(rows), shape[1])) < 0.2
        flags.set(rows, values)
        reference[rows] |= values
        np.testing.assert_array_equal(np.asarray(flags), reference)
    mask = rng.random(shape[0]) < 0.5
    np.testing.assert_array_equal(flags.rows(mask), reference[mask])
    assert not Flags.zeros(*shape).rows(slice(None)).any()


def test_flags_need_two_dimensions():
    with pytest.raises(ValueError, match="W×K"):
        Flags(np.zeros(5, bool))
