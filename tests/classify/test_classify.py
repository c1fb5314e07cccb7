"""train-svm and eval through the CLI: reports, recorded splits, VOC mAP path, mismatch errors."""

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DEMO, VOC_SAMPLE, fast_config, one_process, run_sppfeat
from sppfeat import ExtractionConfig, evaluate, extract, train_svm
from sppfeat.classify.svm import DEFAULT_C_GRID
from sppfeat.classify.training import check_enough_images
from sppfeat.cli import main
from sppfeat.storage.feature_file import open_features
from sppfeat.storage.model_file import load_model


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_and_eval_single_label(tmp_path, demo_features):
    model = tmp_path / "m.h5"
    result = run_cli("train-svm", demo_features, model, "--protocol", "per-class", "--train-per-class", "5",
                     "--test-per-class", "0", "--seed", "2")
    assert result.exit_code == 0, result.output
    m = load_model(model)
    ff = open_features(demo_features)
    assert m.coef.shape == (6, 64000) and m.class_names == ff.class_names
    assert len(m.train_paths) == 30 and len(m.test_paths) == 30 and not set(m.train_paths) & set(m.test_paths)
    assert m.split["protocol"] == "per-class"
    scores = {float(c): v for c, v in m.cv_scores.items()}
    tried = sorted(scores)
    assert set(DEFAULT_C_GRID) <= set(tried) and m.C < tried[-1]  # a best C on the top edge grows the grid
    assert m.C > tried[0] or scores[tried[0]] == scores[tried[1]]  # on the bottom edge only by a tie
    assert m.feature_record == ff.record and m.feature_settings == ff.config
    report_path = tmp_path / "r.json"
    result = run_cli("eval", model, demo_features, "--report", report_path)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["n_test"] == 30 and report["evaluated_on"] == "recorded test split"
    assert 0.8 <= report["accuracy"] <= 1.0 and 0 <= report["mean_class_accuracy"] <= 1
    assert set(report["per_class"]) == set(ff.class_names)
    # the same test rows scored by hand: signed power, L2, linear scores, best class
    rows = [ff.paths.index(p) for p in m.test_paths]
    x = ff.read_features(np.array(rows)).astype(np.float64)
    x = np.sign(x) * np.abs(x) ** m.power
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    predicted = (x @ m.coef.T.astype(np.float64) + m.intercept).argmax(1)
    assert report["accuracy"] == pytest.approx((predicted == ff.labels[rows]).mean())
    assert "accuracy" in result.output
    assert ("worst classes" in result.output) == (report["accuracy"] < 1)  # only classes below 100 % are listed
    assert [(p["path"], p["true"], p["predicted"]) for p in report["predictions"]] == [
        (path, ff.class_names[ff.labels[row]], ff.class_names[k]) for path, row, k in zip(m.test_paths, rows, predicted)]


def test_fixed_c_and_power(tmp_path, demo_features):
    result = train_svm(demo_features, tmp_path / "m.h5", C=0.5, power=0.5, protocol="stratified")
    assert result.C == 0.5 and result.cv_scores == {}
    assert load_model(tmp_path / "m.h5").power == 0.5
    assert evaluate(tmp_path / "m.h5", demo_features).n_test == result.n_test


def test_mismatched_features_are_refused(tmp_path, demo_features):
    model = tmp_path / "m.h5"
    train_svm(demo_features, model, C=1.0)
    other = tmp_path / "other.h5"
    with h5py.File(demo_features, "r") as src, h5py.File(other, "w") as dst:
        for key in src:
            src.copy(key, dst)
        record = json.loads(src.attrs["config"])
        record["scale"] = 320
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["config"] = json.dumps(record)
    result = run_cli("eval", model, other)
    assert result.exit_code == 2 and "extracted with --scale 320, the model with --scale 224" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert run_cli("eval", other, demo_features).exit_code == 2  # a feature file is not a model
    assert run_cli("train-svm", demo_features, model).exit_code == 2  # exists, no --overwrite
    assert run_cli("train-svm", demo_features, tmp_path / "x.h5", "--C", "-1").exit_code == 2


def test_eval_on_another_file_uses_every_row(tmp_path, demo_features):
    model = tmp_path / "m.h5"
    train_svm(demo_features, model, C=1.0, protocol="stratified")
    copy = tmp_path / "copy.h5"
    with h5py.File(demo_features, "r") as src, h5py.File(copy, "w") as dst:
        for key in src:
            src.copy(key, dst)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        del dst["paths"]
        dst.create_dataset("paths", data=[f"renamed/{i}" for i in range(60)], dtype=h5py.string_dtype())
    report = evaluate(model, copy)
    assert report.n_test == 60 and report.evaluated_on == "every row"


@pytest.mark.skipif(not VOC_SAMPLE.is_dir(), reason="needs ../shared/data/voc2007-sample")
def test_voc_multilabel_path_end_to_end(tmp_path):
    root = VOC_SAMPLE / "VOCdevkit"
    for split in ("train", "val"):
        config = ExtractionConfig(split=split, scales=(64,), levels=(1,))
        extract(root, tmp_path / f"{split}.h5", config, one_process(), quiet=True)
    train = open_features(tmp_path / "train.h5")
    assert train.targets.shape[1] == 20 and train.config.dataset == "voc2007" and train.config.split == "train"
    result = run_cli("train-svm", tmp_path / "train.h5", tmp_path / "m.h5", "--C", "1")
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "m.h5").multilabel
    report = evaluate(tmp_path / "m.h5", tmp_path / "val.h5", tmp_path / "r.json")
    assert set(report.ap) == set(train.class_names) and report.n_test == len(open_features(tmp_path / "val.h5").paths)
    assert report.mAP == pytest.approx(np.mean(list(report.ap.values())))
    assert 0.2 < report.mAP <= 1.0  # far above chance (about the class frequency) even at 64 px
    written = json.loads((tmp_path / "r.json").read_text())
    assert written == report.to_json() and all(round(ap, 4) == ap for ap in written["ap"].values())


def copy_features(source, target, *, rename_class=None, touch_record=True):
    """A copy of a feature file that is not the same file for eval (another record), optionally with
    one class renamed."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for key in src:
            src.copy(key, dst)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        if touch_record:
            record = json.loads(src.attrs["config"])
            record["created"] = "another day"
            dst.attrs["config"] = json.dumps(record)
        if rename_class:
            names = [name.replace(*rename_class) for name in dst["class_names"].asstr()[()]]
            del dst["class_names"]
            dst.create_dataset("class_names", data=names, dtype=h5py.string_dtype())


def test_eval_leaves_out_training_rows_and_names_unknown_classes(tmp_path, demo_features):
    model = tmp_path / "m.h5"
    train_svm(demo_features, model, C=1.0, train_per_class=5, test_per_class=0)
    other = tmp_path / "other.h5"
    copy_features(demo_features, other, rename_class=("pizza", "dog"))
    report = evaluate(model, other, tmp_path / "r.json")
    assert report.left_out_training == 30 and report.evaluated_on == "every row but those left out"
    assert report.unknown_classes == {"dog": 5}  # pizza's 5 test rows, under a name the model does not know
    assert report.n_test == 25 and set(report.per_class) == {"Leopards", "airplanes", "grand_piano", "soccer_ball",
                                                              "starfish"}
    kept = evaluate(model, other, keep_training_rows=True)
    assert kept.left_out_training == 0 and kept.n_test == 50 and kept.unknown_classes == {"dog": 10}
    result = run_cli("eval", model, other)
    assert "left out: 30 rows whose paths are the model's training images (--keep-training-rows" in result.output
    assert "left out: 5 rows of classes the model does not know (dog 5)" in result.output
    worst = result.output.split("worst classes:")[1].splitlines()[1:] if "worst classes:" in result.output else []
    assert all(float(line.split()[1]) < 100 for line in worst if not line.startswith("left out"))


def test_one_class_missing_folders_and_protocol_options(tmp_path, demo_features):
    one = tmp_path / "one"
    shutil.copytree(DEMO / "pizza", one / "pizza")
    extract(one, tmp_path / "one.h5", fast_config(), one_process(), quiet=True)
    with pytest.raises(ValueError, match=r"has one class \(pizza, 10 rows\); training needs at least 2 classes"):
        train_svm(tmp_path / "one.h5", tmp_path / "m.h5")
    for args in (["train-svm", demo_features, tmp_path / "no" / "m.h5"],
                 ["eval", demo_features, demo_features, "--report", tmp_path / "no" / "r.json"]):
        result = run_cli(*args)
        assert result.exit_code == 2 and "output folder does not exist" in result.output, result.output
    # a plain folder's automatic protocol is stratified, but per-class options choose per-class
    plain = tmp_path / "plain.h5"
    copy_features(demo_features, plain, touch_record=False)
    result = run_cli("train-svm", plain, tmp_path / "pc.h5", "--train-per-class", "4", "--test-per-class", "0", "--C", "1")
    assert result.exit_code == 0, result.output
    split = load_model(tmp_path / "pc.h5").split
    assert split["protocol"] == "per-class" and split["n_train"] == 24 and split["n_test"] == 36
    both = run_cli("train-svm", plain, tmp_path / "x.h5", "--train-per-class", "4", "--test-fraction", "0.5")
    assert both.exit_code == 2 and "pass the options of one protocol" in both.output
    short = run_cli("train-svm", plain, tmp_path / "x.h5", "--train-per-class", "10")  # 10 images a class
    assert short.exit_code == 2 and "has 10 images, needs more than --train-per-class 10" in short.output, short.output


@pytest.fixture
def three_images(tmp_path):
    """A feature file of 3 images: class a has 1, class b 2 (the stratified split tests one of b's)."""
    for name, source, n in (("a", "pizza", 1), ("b", "starfish", 2)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for path in sorted((DEMO / source).iterdir())[:n]:
            shutil.copy(path, tmp_path / "img" / name)
    extract(tmp_path / "img", tmp_path / "f.h5", fast_config(), one_process(), quiet=True)
    return tmp_path / "f.h5"


def test_too_few_images_for_cross_validation_are_refused_in_one_line(three_images, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on the way
        with pytest.raises(ValueError, match=r"^C='auto' picks C by 3-fold cross-validation, which needs 3 "
                                             r"training images of every class: a has 1, b has 1; pass a fixed C=N"):
            train_svm(three_images, tmp_path / "m.h5")
        assert not (tmp_path / "m.h5").exists()
        result = train_svm(three_images, tmp_path / "m.h5", C=1.0)  # a fixed C needs no folds
    assert (result.n_train, result.n_test, result.cv_scores) == (2, 1, {})
    done = run_sppfeat("train-svm", three_images, tmp_path / "cli.h5")
    assert done.returncode == 2 and not (tmp_path / "cli.h5").exists()
    assert done.stderr.splitlines() == ["sppfeat: --C auto picks C by 3-fold cross-validation, which needs 3 training "
                                        "images of every class: a has 1, b has 1; pass a fixed --C N or more images"]


def test_a_class_whose_images_were_all_skipped_is_refused(tmp_path):
    """A folder of JPEGs that cannot be decoded is a class of the file with no row: training it would
    make a constant SVM that predict ranks among the others."""
    for name, source in (("a", "pizza"), ("b", "starfish")):
        (tmp_path / "img" / name).mkdir(parents=True)
        for path in sorted((DEMO / source).iterdir())[:3]:
            shutil.copy(path, tmp_path / "img" / name)
    (tmp_path / "img" / "broken").mkdir()
    header = next((DEMO / "pizza").iterdir()).read_bytes()[:400]
    for k in range(2):  # a JPEG's header, then noise: listed as an image, skipped when decoded
        (tmp_path / "img" / "broken" / f"{k}.jpg").write_bytes(header + np.random.default_rng(k).bytes(3000))
    extract(tmp_path / "img", tmp_path / "f.h5", fast_config(), one_process(), quiet=True)
    features = open_features(tmp_path / "f.h5")
    assert features.class_names == ["a", "b", "broken"] and np.bincount(features.labels).tolist() == [3, 3]
    for protocol in ("stratified", "per-class", "all"):
        result = run_cli("train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "1", "--protocol", protocol)
        assert result.exit_code == 2 and result.stderr.splitlines() == [
            f"sppfeat: {tmp_path / 'f.h5'} has no image of 1 of its classes: broken (2 files skipped); every class "
            "needs training images (remove the class folder, or replace its files, and extract again)"], protocol
        assert not (tmp_path / "m.h5").exists()
    # a class without rows and without skipped files (a box file's unused category, a shard's absent
    # class) is no lost folder: trained as before, without a row
    with h5py.File(tmp_path / "f.h5", "r+") as f:
        del f["skipped"]
    result = run_cli("train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "1", "--protocol", "all")
    assert result.exit_code == 0, result.output


def test_enough_images_names_the_classes_short_of_them():
    names = [f"c{k}" for k in range(8)]
    check_enough_images(np.repeat(np.arange(8), 3), names, 3)
    with pytest.raises(ValueError, match=r"needs 4 training images of every class: c0 has 3, c1 has 3, c2 has 3, "
                                         r"c3 has 3, c4 has 3 and 3 more classes; pass fewer folds=N, a fixed C=N"):
        check_enough_images(np.repeat(np.arange(8), 3), names, 4)
    multilabel = np.array([[1, -1], [1, 0], [-1, -1]])  # b: no positive image (a difficult one only)
    with pytest.raises(ValueError, match=r"^every class needs positive training images: b has 0$"):
        check_enough_images(multilabel, ["a", "b"], None)
