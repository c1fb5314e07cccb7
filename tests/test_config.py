"""ExtractionConfig: validation at the boundary, its record form, and the keys each check compares."""

import dataclasses

import pytest

from sppfeat import ExtractionConfig
from sppfeat.config import MERGE, MODEL, RESUME, changed_settings, checked_keys


def test_settings_take_real_types_and_are_normalised():
    config = ExtractionConfig(levels=[3, 1], scales=[224, 288])
    assert config.levels == (3, 1) and config.scales == (224, 288)
    assert config.feature_dim == 1280 * 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pool = "avg"


@pytest.mark.parametrize("changes, message", [
    (dict(levels="6,3,2,1"), "levels must be a sequence of integers"),
    (dict(levels=(6, 0)), "levels must be one or more positive"),
    (dict(levels=()), "levels must be one or more positive"),
    (dict(levels=(2.5,)), "levels must be integers"),
    (dict(scales="224"), "scales must be a sequence"),
    (dict(scales=(224, 224)), "scales must be distinct"),
    (dict(scales=(-1,)), "scales must be distinct integers >= 0"),
    (dict(pool="median"), "pool must be one of"),
    (dict(max_side=0), "max_side must be an integer >= 1"),
    (dict(dtype="int8"), "dtype must be one of"),
    (dict(dataset="imagenet"), "dataset must be one of"),
    (dict(split="everything"), "split must be one of"),
    (dict(backbone="nope"), "unknown backbone 'nope'"),
    (dict(combine="mean", scales=(224, 288)), "combine must be one of"),
])
def test_bad_settings_name_the_argument(changes, message):
    with pytest.raises(ValueError, match=message):
        ExtractionConfig(**changes)


def test_record_round_trip_and_what_the_backbone_implies():
    config = ExtractionConfig(backbone="vgg16", levels=(4, 1), scales=(0,), max_side=900, dtype="float16",
                              dataset="voc2007", split="val", weights_sha256="ab" * 32)
    record = config.to_record()
    assert record["scale"] == 0 and record["levels"] == [4, 1] and record["split"] == "val"
    assert record["feature_dim"] == 512 * 17 and record["min_side"] == 16 and record["format_version"] == 2
    assert ExtractionConfig.from_record(record) == config
    assert ExtractionConfig.from_record(ExtractionConfig(scales=(224, 288)).to_record()).scales == (224, 288)
    assert "weights" not in record  # a location, not a setting: the checksum is recorded
    with pytest.raises(ValueError, match="lack 'pool'"):
        ExtractionConfig.from_record({k: v for k, v in record.items() if k != "pool"})


def test_each_check_compares_its_own_keys():
    model, merge, resume = checked_keys(MODEL), checked_keys(MERGE), checked_keys(RESUME)
    assert set(model) < set(merge) < set(resume)
    assert {"backbone", "weights_sha256", "levels", "pool", "scale", "max_side", "feature_dim"} <= set(model)
    assert "dtype" not in model and "dtype" in merge  # a float16 file suits a model made on float32 rows
    assert set(resume) - set(merge) == {"image_root"}  # shards may come from nodes that mount the images elsewhere
    base = ExtractionConfig().to_record()
    assert changed_settings(base, ExtractionConfig(dtype="float16").to_record(), MODEL) == []
    assert changed_settings(base, ExtractionConfig(dtype="float16").to_record(), MERGE) == ["dtype"]
    assert changed_settings(base, ExtractionConfig(scales=(288,)).to_record(), MODEL) == ["scale"]
    assert changed_settings({**base, "image_root": "/a"}, {**base, "image_root": "/b"}, RESUME) == ["image_root"]


def test_combine_is_resolved_and_records_without_it_read_as_before():
    assert ExtractionConfig(scales=(480,), combine="best").combine == "max"  # one scale: nothing to choose
    best = ExtractionConfig(scales=(480, 688), combine="best")
    assert best.to_record()["combine"] == "best" and ExtractionConfig.from_record(best.to_record()) == best
    old = {k: v for k, v in ExtractionConfig().to_record().items() if k != "combine"}  # written before it existed
    assert ExtractionConfig.from_record(old).combine == "max"
    assert changed_settings(old, ExtractionConfig().to_record(), MODEL) == []
    two = ExtractionConfig(scales=(224, 288))
    assert changed_settings(two.to_record(), two.replace(combine="best").to_record(), MODEL) == ["combine"]
    with pytest.raises(ValueError, match="applies to regions"):
        two.replace(combine="best").check_whole_images()
