"""Settings measured per data set: used where the caller leaves them unset, recorded resolved in the
file, shown by info and --help, and always overridden by the caller's own."""

import shutil

import pytest

from conftest import DEMO, cosine, one_process, run_sppfeat
from sppfeat import ExtractionConfig, describe, extract
from sppfeat import config as config_module
from sppfeat.data.discover import VOC_CLASSES
from sppfeat.report import describe_features
from sppfeat.storage.feature_file import open_features


@pytest.fixture
def tiny_voc(tmp_path):
    """A VOC2007 devkit of 4 demo photos in the train split (all of class 'cat')."""
    root = tmp_path / "VOC2007"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"00000{k}" for k in range(4)]
    for image_id, photo in zip(ids, sorted(DEMO.rglob("*.jpg"))):
        shutil.copy(photo, root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    for name in VOC_CLASSES:
        label = "1" if name == "cat" else "-1"
        (root / "ImageSets" / "Main" / f"{name}_train.txt").write_text("".join(f"{i} {label}\n" for i in ids))
    return root


@pytest.fixture
def measured(monkeypatch):
    """The data sets' settings with a small VOC scale, so that the test runs fast."""
    monkeypatch.setattr(config_module, "DATASET_SETTINGS", {"voc2007": {"scales": (96,)}})


def test_a_data_set_without_the_scale_set_gets_its_measured_scale_recorded(tiny_voc, tmp_path, measured):
    out = tmp_path / "voc.h5"
    extract(tiny_voc, out, ExtractionConfig(levels=(1,), split="train"), one_process(), quiet=True)
    ff = open_features(out)
    assert ff.config.scales == (96,) and ff.record["scale"] == 96 and ff.record["dataset_settings"] == "scale=96"
    shown = dict(line.split(None, 1) for line in describe_features(out).splitlines() if line.startswith("    "))
    assert shown["dataset_settings"] == "scale=96" and shown["scale"] == "96"
    at_96 = describe([str(tiny_voc / p) for p in ff.paths], ExtractionConfig(levels=(1,), scales=(96,)), device="cpu")
    assert (cosine(ff.read_features(), at_96) >= 0.9999).all()  # the pixels really were at 96


def test_the_callers_scale_wins_and_plain_folders_keep_the_general_default(tiny_voc, tmp_path, measured):
    own = tmp_path / "own.h5"
    extract(tiny_voc, own, ExtractionConfig(levels=(1,), split="train", scales=(64,)), one_process(), quiet=True)
    assert open_features(own).record["scale"] == 64 and open_features(own).record["dataset_settings"] == ""
    folder = tmp_path / "plain"
    shutil.copytree(DEMO / "starfish", folder / "starfish")
    plain = tmp_path / "plain.h5"
    extract(folder, plain, ExtractionConfig(levels=(1,)), one_process(), quiet=True)
    assert open_features(plain).record["scale"] == config_module.GENERAL_SCALES[0] == 224


def test_help_lists_the_measured_settings():
    shown = run_sppfeat("extract", "--help").stdout
    assert "voc2007: 320" in " ".join(shown.split())
