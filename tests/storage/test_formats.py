"""Files written by sppfeat 0.1.0 (format 1, kept in tests/fixtures/v0_1_0) against today's code:
feature and model files open and work, their settings rebuild, and an interrupted run's progress
folder is refused with one line that says how to start over."""

import gzip
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DEMO, FIXTURES, cosine
from sppfeat import ExtractionConfig, Runtime, evaluate, extract
from sppfeat.cli import main
from sppfeat.storage.feature_file import open_features
from sppfeat.storage.model_file import load_model

OLD = FIXTURES / "v0_1_0"
OLD_SETTINGS = dict(levels=(1,), scales=(32,))  # what make_fixtures.py used


@pytest.fixture
def old_files(tmp_path):
    """The 0.1.0 files and the six demo photos they were made from, in a fresh folder."""
    for name in ("features.h5", "model.h5"):
        with gzip.open(OLD / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    shutil.copytree(OLD / "interrupted.h5.parts", tmp_path / "interrupted.h5.parts")
    for cls in ("airplanes", "pizza"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for n in ("0011", "0012", "0013"):
            shutil.copy(DEMO / cls / f"image_{n}.jpg", tmp_path / "imgs" / cls)
    return tmp_path


def test_an_old_feature_file_opens_and_its_vectors_are_todays(old_files):
    old = open_features(old_files / "features.h5")
    assert old.format_version == 1 and len(old.paths) == 6 and old.dim == 1280
    assert old.config == ExtractionConfig(**OLD_SETTINGS, dataset="folder", weights_sha256=old.record["weights_sha256"],
                                          shapes="exact", compute="float32")  # what sppfeat 0.1.0 did
    result = extract(old_files / "imgs", old_files / "new.h5", old.config, Runtime(workers=0), quiet=True)
    new = open_features(result.path)
    assert new.format_version == 2 and new.paths == old.paths and new.labels.tolist() == old.labels.tolist()
    assert cosine(new.read_features(), old.read_features()).min() >= 0.9999
    info = CliRunner().invoke(main, ["info", str(old_files / "features.h5")])
    assert info.exit_code == 0 and "format 1" in info.output and "6 × 1280" in info.output


def test_an_old_model_file_loads_and_scores_old_and_new_features(old_files):
    model = load_model(old_files / "model.h5")
    assert model.format_version == 1 and model.coef.shape == (2, 1280)
    assert model.feature_settings.levels == (1,) and model.feature_settings.scales == (32,)
    on_old = evaluate(old_files / "model.h5", old_files / "features.h5")
    assert on_old.evaluated_on == "recorded test split" and on_old.n_test == len(model.test_paths) == 2
    extract(old_files / "imgs", old_files / "new.h5", model.feature_settings, Runtime(workers=0), quiet=True)
    on_new = evaluate(old_files / "model.h5", old_files / "new.h5")  # the same photos, extracted today
    assert on_new.left_out_training == 4 and on_new.n_test == 2
    assert on_new.accuracy == on_old.accuracy
    every = evaluate(old_files / "model.h5", old_files / "new.h5", keep_training_rows=True)
    assert every.evaluated_on == "every row" and every.n_test == 6 and every.accuracy >= 5 / 6


def test_an_old_progress_folder_is_refused_with_one_line(old_files):
    config = ExtractionConfig(**OLD_SETTINGS)
    out = old_files / "interrupted.h5"
    with pytest.raises(ValueError, match="another version of sppfeat.*overwrite=True"):
        extract(old_files / "imgs", out, config, Runtime(workers=0), resume=True, quiet=True)
    refused = CliRunner().invoke(main, ["extract", str(old_files / "imgs"), str(out), "--levels", "1", "--scale",
                                        "32", "--workers", "0", "--resume"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "--overwrite" in refused.output
    extract(old_files / "imgs", out, config, Runtime(workers=0), overwrite=True, quiet=True)
    assert np.isfinite(open_features(out).read_features()).all()


def test_an_output_must_be_a_new_or_replaceable_file_that_is_no_input(tmp_path):
    from sppfeat.storage.hdf5 import check_output

    (tmp_path / "d.csv").mkdir()
    for path in (tmp_path / "d.csv", tmp_path):
        with pytest.raises(ValueError, match="is a folder, not a file"):
            check_output(path, replace=True)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.xml").write_text("<annotation/>")
    (tmp_path / "m.h5").write_text("")
    with pytest.raises(ValueError, match="m.h5 exists; pass overwrite=True"):
        check_output(tmp_path / "m.h5", replace=False)
    for inputs in ((tmp_path / "in",), (None, tmp_path / "in" / "a.xml")):  # a folder's file, or the file itself
        with pytest.raises(ValueError, match=r"a.xml is one of the inputs"):
            check_output(tmp_path / "in" / "a.xml", replace=True, inputs=inputs)
    new = tmp_path / "in" / "new.h5"  # a new file beside the inputs replaces none of them
    assert check_output(new, replace=False, inputs=(tmp_path / "in",)) == new
    new.write_text("")  # nor does an earlier output there (YOLO labels often sit beside the images)
    assert check_output(new, replace=True, inputs=(tmp_path / "in",)) == new
    with pytest.raises(ValueError, match="output folder does not exist"):
        check_output(tmp_path / "nowhere" / "m.h5", replace=False)


@pytest.mark.parametrize("cut", [4, 30])  # inside the last score; before the label
def test_merge_refuses_a_detection_shard_cut_short_mid_row(tmp_path, cut):
    import json

    from sppfeat.detection.inference import Detection
    from sppfeat.detection.outputs import write_detections
    from sppfeat.shards import record_path, shard_path

    photos = sorted(p.relative_to(DEMO).as_posix() for p in (DEMO / "starfish").glob("*.jpg"))[:4]
    shards = [shard_path(tmp_path / "d.csv", i, 2) for i in range(2)]
    for i, shard in enumerate(shards):
        rows = [Detection(p, 10.0, 20.0, 110.5, 90.0, "starfish", 0.87654) for p in photos[2 * i:2 * i + 2]]
        write_detections(shard, rows)
        record_path(shard).write_text(json.dumps({"model": "m.h5", "shard": [i, 2]}))
    runner = CliRunner()
    assert runner.invoke(main, ["merge", *map(str, shards), str(tmp_path / "ok.csv")]).exit_code == 0
    shards[1].write_bytes(shards[1].read_bytes()[:-cut])
    result = runner.invoke(main, ["merge", *map(str, shards), str(tmp_path / "d.csv")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"{shards[1]}, line 3" in result.output and not (tmp_path / "d.csv").exists()
