"""Describer: the network built once and reused; the same vectors as describe() and describe_regions()."""

import numpy as np
import pytest

from conftest import DEMO, fast_config
from sppfeat import REGION_DEFAULTS, Describer, ExtractionConfig, describe, describe_regions
from sppfeat.features import in_memory

PHOTOS = [DEMO / "pizza" / "image_0011.jpg", DEMO / "starfish" / "image_0018.jpg", DEMO / "grand_piano" / "image_0011.jpg"]
BOXES = [[10, 10, 120, 90], [0, 0, 60, 60], [30, 20, 200, 150]]


@pytest.fixture
def builds(monkeypatch):
    """How many networks in_memory builds (each one loads and hashes the weights)."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return build(*args, **kwargs)

    build = in_memory.build_descriptor
    monkeypatch.setattr(in_memory, "build_descriptor", counted)
    return calls


def test_describer_builds_the_network_once_and_gives_the_functions_vectors(builds):
    config = fast_config()
    describer = Describer(config, batch_size=2)
    one_at_a_time = np.concatenate([describer.describe(photo) for photo in PHOTOS])
    batched = describer.describe(PHOTOS)
    regions = [describer.describe_regions(photo, BOXES) for photo in PHOTOS]
    assert len(builds) == 1
    assert describer.dim == config.feature_dim == 1280 * 5 and batched.shape == (3, describer.dim)
    assert describer.config_.is_resolved and describer.config_.scales == (64,) and describer.config_.weights_sha256
    np.testing.assert_array_equal(batched, describe(PHOTOS, config, batch_size=2))
    np.testing.assert_array_equal(one_at_a_time, np.concatenate([describe(photo, config) for photo in PHOTOS]))
    for photo, rows in zip(PHOTOS, regions):
        assert rows.shape == (3, describer.dim) and rows.dtype == np.float32
        np.testing.assert_array_equal(rows, describe_regions(photo, BOXES, config))
    assert len(builds) == 1 + 1 + 3 + 3  # each call of a function builds its own


def test_the_defaults_are_those_of_the_functions():
    photo = PHOTOS[0]
    whole = Describer()
    assert whole.config_.levels == ExtractionConfig().levels and whole.config_.scales == (224,)
    np.testing.assert_array_equal(whole.describe(photo), describe(photo))
    np.testing.assert_array_equal(Describer(REGION_DEFAULTS).describe_regions(photo, BOXES),
                                  describe_regions(photo, BOXES))


def test_whole_images_need_combine_max_and_bad_input_is_named():
    describer = Describer(fast_config(scales=(64, 96), combine="best"))
    with pytest.raises(ValueError, match="combine='best'.*applies to regions"):
        describer.describe(PHOTOS[0])
    assert describer.describe_regions(PHOTOS[0], BOXES).shape == (3, describer.dim)
    with pytest.raises(ValueError, match=r"boxes\[1\]: inverted box"):
        describer.describe_regions(PHOTOS[0], [[0, 0, 9, 9], [9, 9, 0, 0]])
    with pytest.raises(ValueError, match=r"images\[1\]: file not found"):
        Describer(fast_config()).describe([PHOTOS[0], DEMO / "nothing.jpg"])
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        Describer(fast_config(), batch_size=0)
