"""The public API: what `sppfeat` exports, `describe` against `extract`, `load_features`."""

import pkgutil
import shutil

import numpy as np
import pytest
from PIL import Image

import sppfeat
from conftest import DEMO, cosine, fast_config, one_process
from sppfeat import ExtractionConfig, describe, extract, load_features
from sppfeat.storage.feature_file import open_features

API = {"extract", "describe", "load_features", "merge", "train_svm", "evaluate", "ExtractionConfig", "Runtime",
       "ExtractResult", "Features", "TrainResult", "Evaluation", "spatial_pyramid_pool", "SpatialPyramidPool",
       "predict", "Prediction", "Predictions", "Describer",
       "regions", "RegionsResult", "describe_regions", "REGION_DEFAULTS", "pyramid_pool_boxes", "BoxPyramidPool",
       "proposals", "ProposalConfig", "ProposalsResult", "train_detector", "TrainDetectorResult", "TrainingSettings",
       "HeadSettings", "DETECTION_DEFAULTS", "detect", "Detection", "DetectResult", "evaluate_detections",
       "DetectionEvaluation"}


def test_all_lists_the_api_and_no_module_is_named_like_a_function():
    assert set(sppfeat.__all__) == API | {"__version__"}
    assert all(getattr(sppfeat, name) is not None for name in sppfeat.__all__)
    modules = {info.name for info in pkgutil.iter_modules(sppfeat.__path__)}
    functions = {name for name in API if callable(getattr(sppfeat, name)) and name[0].islower()}
    assert modules and not modules & functions


def test_describe_equals_the_rows_extract_writes_for_the_demo_images(demo_features):
    ff = open_features(demo_features)
    vectors = describe([DEMO / path for path in ff.paths], ff.config, batch_size=8)
    assert vectors.shape == (60, 64000) and vectors.dtype == np.float32
    assert cosine(vectors, ff.read_features()).min() >= 0.9999


def test_describe_takes_paths_pil_images_and_arrays_alike(tmp_path):
    photo = tmp_path / "photo.png"  # lossless, so the three forms hold the same pixels
    with Image.open(DEMO / "pizza" / "image_0011.jpg") as im:
        im.convert("RGB").save(photo)
    pil = Image.open(photo)
    array = np.asarray(pil.convert("RGB"))
    grey = np.asarray(pil.convert("L"))
    config = fast_config()
    rows = describe([photo, pil, array, grey], config)
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(rows[2], rows[0], rtol=1e-3, atol=1e-4)
    assert cosine(rows[3:], rows[:1])[0] < 0.999  # grey really is another input
    alone = describe(photo, config)  # a batch of one: other last bits
    np.testing.assert_allclose(alone, rows[:1], rtol=1e-3, atol=1e-4)
    assert describe(np.stack([array, array]), config).shape == (2, 1280 * 5)
    for bad, message in [([photo, np.zeros((4, 4, 3), np.float32)], r"images\[1\]: arrays must be uint8"),
                         ([tmp_path / "missing.jpg"], r"images\[0\]: file not found"),
                         ([3], r"images\[0\]: expected a path")]:
        with pytest.raises(ValueError, match=message):
            describe(bad, config)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 40)
    with pytest.raises(ValueError, match=r"images\[0\]: cannot decode"):
        describe([tmp_path / "broken.jpg"], config)


def test_load_features_reads_arrays_and_parts_of_a_file(tmp_path):
    folder = tmp_path / "two"
    for cls in ("pizza", "starfish"):
        shutil.copytree(DEMO / cls, folder / cls)
    extract(folder, tmp_path / "f16.h5", fast_config(dtype="float16"), one_process(), quiet=True)
    ff = open_features(tmp_path / "f16.h5")
    loaded = load_features(tmp_path / "f16.h5")
    assert loaded.features.dtype == np.float32 and loaded.features.shape == (20, 1280 * 5)
    assert loaded.paths == ff.paths and loaded.class_names == ["pizza", "starfish"]
    assert all(type(p) is str for p in loaded.paths + loaded.class_names)  # not h5py's bytes
    assert loaded.labels.tolist() == [0] * 10 + [1] * 10 and loaded.targets is None
    assert loaded.config == ff.config and loaded.config.dtype == "float16"
    rows = np.array([17, 3, 9])
    part = load_features(tmp_path / "f16.h5", rows)
    np.testing.assert_array_equal(part.features, loaded.features[rows])
    assert part.paths == [ff.paths[i] for i in rows] and part.labels.tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="rows must be in"):
        load_features(tmp_path / "f16.h5", np.array([20]))


def test_extract_takes_typed_settings_only(tmp_path):
    with pytest.raises(ValueError, match="levels must be a sequence"):
        ExtractionConfig(levels="2,1")
    with pytest.raises(ValueError, match="shard must be a pair"):
        extract(DEMO, tmp_path / "o.h5", fast_config(), shard="0/2")
