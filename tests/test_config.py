"""ExtractionConfig: validation at the boundary, its record form, and the keys each check compares."""

import dataclasses

import pytest

from sppfeat import ExtractionConfig
from sppfeat.config import (DATASET_SETTINGS, GENERAL_SCALES, MERGE, MODEL, RESUME, changed_settings, checked_keys,
                            describe_settings)


def on_cpu(config: ExtractionConfig) -> ExtractionConfig:
    """`config` as a CPU run over a plain folder (or its own data set) resolves it."""
    return config.resolved("folder" if config.dataset == "auto" else config.dataset, config.split, "cpu")


def test_settings_take_real_types_and_are_normalised():
    config = ExtractionConfig(levels=[3, 1], scales=[224, 288])
    assert config.levels == (3, 1) and config.scales == (224, 288)
    assert config.feature_dim == 1280 * 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pool = "avg"


@pytest.mark.parametrize("changes, message", [
    (dict(levels="6,3,2,1"), "levels must be a sequence of integers"),
    (dict(levels=(6, 0)), "levels must be one or more distinct integers from 1 to 16"),
    (dict(levels=()), "levels must be one or more distinct integers from 1 to 16"),
    (dict(levels=(17, 1)), "levels must be one or more distinct integers from 1 to 16"),
    (dict(levels=(2, 2, 1)), "levels must be one or more distinct integers from 1 to 16"),
    (dict(levels=(2.5,)), "levels must be integers"),
    (dict(scales="224"), "scales must be a sequence"),
    (dict(scales=(224, 224)), "scales must be distinct"),
    (dict(scales=(-1,)), "scales must be distinct integers from 0 to 65535"),
    (dict(scales=(10 ** 20,)), "scales must be distinct integers from 0 to 65535"),
    (dict(pool="median"), "pool must be one of"),
    (dict(max_side=0), "max_side must be an integer from 1 to 65535"),
    (dict(max_side=10 ** 20), "max_side must be an integer from 1 to 65535"),
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
    record = on_cpu(config).to_record()
    assert record["scale"] == 0 and record["levels"] == [4, 1] and record["split"] == "val"
    assert record["feature_dim"] == 512 * 17 and record["min_side"] == 16 and record["format_version"] == 2
    assert ExtractionConfig.from_record(record) == on_cpu(config)
    assert ExtractionConfig.from_record(on_cpu(ExtractionConfig(scales=(224, 288))).to_record()).scales == (224, 288)
    assert "weights" not in record  # a location, not a setting: the checksum is recorded
    with pytest.raises(ValueError, match="lack 'pool'"):
        ExtractionConfig.from_record({k: v for k, v in record.items() if k != "pool"})


def test_each_check_compares_its_own_keys():
    model, merge, resume = checked_keys(MODEL), checked_keys(MERGE), checked_keys(RESUME)
    assert set(model) < set(merge) < set(resume)
    assert {"backbone", "weights_sha256", "levels", "pool", "scale", "max_side", "feature_dim"} <= set(model)
    assert "dtype" not in model and "dtype" in merge  # a float16 file suits a model made on float32 rows
    assert set(resume) - set(merge) == {"image_root"}  # shards may come from nodes that mount the images elsewhere
    base = on_cpu(ExtractionConfig()).to_record()
    assert changed_settings(base, on_cpu(ExtractionConfig(dtype="float16")).to_record(), MODEL) == []
    assert changed_settings(base, on_cpu(ExtractionConfig(dtype="float16")).to_record(), MERGE) == ["dtype"]
    assert changed_settings(base, on_cpu(ExtractionConfig(scales=(288,))).to_record(), MODEL) == ["scale"]
    assert changed_settings({**base, "image_root": "/a"}, {**base, "image_root": "/b"}, RESUME) == ["image_root"]


def test_combine_is_resolved_and_records_without_it_read_as_before():
    assert ExtractionConfig(scales=(480,), combine="best").combine == "max"  # one scale: nothing to choose
    best = ExtractionConfig(scales=(480, 688), combine="best")
    assert on_cpu(best).to_record()["combine"] == "best"
    assert ExtractionConfig.from_record(on_cpu(best).to_record()) == on_cpu(best)
    old = {k: v for k, v in on_cpu(ExtractionConfig()).to_record().items() if k != "combine"}  # written before it existed
    assert ExtractionConfig.from_record(old).combine == "max"
    assert changed_settings(old, on_cpu(ExtractionConfig()).to_record(), MODEL) == []
    two = ExtractionConfig(scales=(224, 288))
    assert changed_settings(on_cpu(two).to_record(), on_cpu(two.replace(combine="best")).to_record(), MODEL) == ["combine"]
    with pytest.raises(ValueError, match="applies to regions"):
        two.replace(combine="best").check_whole_images()


def test_unset_settings_resolve_by_data_set_and_device_and_the_caller_wins():
    general = ExtractionConfig()
    assert general.scales is None and not general.is_resolved
    with pytest.raises(ValueError, match="not resolved"):
        general.to_record()
    assert general.resolved("folder", None, "cpu").scales == GENERAL_SCALES
    voc = general.resolved("voc2007", "train", "cpu")
    assert voc.scales == DATASET_SETTINGS["voc2007"]["scales"] != GENERAL_SCALES
    assert voc.dataset_settings_used(general) == {"scales": voc.scales}
    assert describe_settings(voc.dataset_settings_used(general)) == f"scale={voc.scales[0]}"
    chosen = ExtractionConfig(scales=(256,)).resolved("voc2007", "train", "cpu")
    assert chosen.scales == (256,) and chosen.dataset_settings_used(ExtractionConfig(scales=(256,))) == {}
    assert (voc.shapes, voc.compute) == ("exact", "float32")
    gpu = general.resolved("folder", None, "cuda")
    assert (gpu.shapes, gpu.compute) == ("bucketed", "bfloat16")
    assert ExtractionConfig(shapes="exact", compute="float32").resolved("folder", None, "cuda").shapes == "exact"
    assert gpu.resize_policies()[0].stride == gpu.spec.stride and voc.resize_policies()[0].stride == 0


def test_shapes_and_compute_change_vectors_and_old_records_read_as_exact_float32():
    cpu, gpu = on_cpu(ExtractionConfig()), ExtractionConfig().resolved("folder", None, "cuda")
    assert changed_settings(cpu.to_record(), gpu.to_record(), MODEL) == ["shapes", "compute"]
    for purpose in (MERGE, RESUME):
        assert {"shapes", "compute"} <= set(changed_settings(cpu.to_record(), gpu.to_record(), purpose))
    old = {k: v for k, v in cpu.to_record().items() if k not in ("shapes", "compute")}  # sppfeat before them
    assert ExtractionConfig.from_record(old) == cpu
    for name, value in (("shapes", "padded"), ("compute", "int8")):
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            ExtractionConfig(**{name: value})


def test_settings_read_back_from_files_keep_values_made_before_the_bounds():
    """--max-side 100000 ('no cap') and --levels 20 were accepted before the bounds: their files still open."""
    record = ExtractionConfig(scales=(224,)).resolved("folder", None, "cpu").to_record()
    record.update(levels=[20, 1], max_side=100_000)
    config = ExtractionConfig.from_record(record)
    assert config.levels == (20, 1) and config.max_side == 100_000
    assert config.replace(weights_sha256="0" * 64).levels == (20, 1)  # as predict fills in the checksum
    with pytest.raises(ValueError, match="levels must be one or more distinct integers from 1 to 16"):
        ExtractionConfig(levels=(20, 1))  # settings made anew are bounded
