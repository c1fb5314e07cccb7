"""sppfeat predict: rows against eval and against scores computed by hand, bad input, Ctrl-C."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DEMO, SUBPROCESS_TIMEOUT, damage_chunk, fast_config, one_process, run_sppfeat, sppfeat_command
from sppfeat import Prediction, evaluate, extract, predict, train_svm
from sppfeat.cli import main
from sppfeat.storage.feature_file import open_features
from sppfeat.storage.model_file import load_model


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The single stderr line of a command (a subprocess or a CliRunner result) that failed with exit code 2."""
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def hand_scores(features: np.ndarray, model) -> np.ndarray:
    """The model's margins computed here in float64: signed power, L2, w·x + b."""
    x = np.sign(features.astype(np.float64)) * np.abs(features.astype(np.float64)) ** model.power
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ model.coef.T.astype(np.float64) + model.intercept


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    """The demo images at the fast settings and a model trained on one image per class (so that it
    makes mistakes: about 80 % accuracy on the other 54)."""
    folder = tmp_path_factory.mktemp("fast")
    features, model = folder / "demo.h5", folder / "model.h5"
    extract(DEMO, features, fast_config(), one_process(), quiet=True)
    train_svm(features, model, C=1.0, protocol="per-class", train_per_class=1, test_per_class=0, seed=0)
    return features, model


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_on_the_test_images_as_a_folder_agrees_with_eval(fast_model, tmp_path):
    features, model = fast_model
    m = load_model(model)
    folder = tmp_path / "test_images"
    for path in m.test_paths:  # the test images only, in their class folders, as new photos
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / path, folder / path)
    report = tmp_path / "report.json"
    assert run_cli("eval", model, features, "--report", report).exit_code == 0
    evaluation = json.loads(report.read_text())
    assert 0.5 < evaluation["accuracy"] < 1.0  # the comparison below covers wrong predictions too

    proc = run_sppfeat("predict", model, folder, "--output", tmp_path / "pred.csv", "--top-k", "3", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # with --output, stdout stays empty
    rows = read_csv(tmp_path / "pred.csv")
    assert list(rows[0]) == ["path", "predicted", "score", "top2", "top2_score", "top3", "top3_score"]
    by_path = {row["path"]: row for row in rows}
    assert sorted(by_path) == sorted(m.test_paths)
    for entry in evaluation["predictions"]:
        row = by_path[entry["path"]]
        assert row["predicted"] == entry["predicted"], entry["path"]
        assert float(row["score"]) == pytest.approx(entry["score"], abs=2e-3)
    accuracy = np.mean([row["path"].split("/")[0] == row["predicted"] for row in rows])
    assert accuracy == pytest.approx(evaluation["accuracy"], abs=5e-5)  # the report rounds to 4 decimals

    # the 3 best classes and their margins, against margins computed here from the stored vectors
    ff = open_features(features)
    index = [ff.paths.index(row["path"]) for row in rows]
    margins = hand_scores(ff.read_features(np.array(index)), m)
    for row, scores in zip(rows, margins):
        best = np.argsort(-scores)[:3]
        assert [row["predicted"], row["top2"], row["top3"]] == [m.class_names[k] for k in best]
        got = [float(row["score"]), float(row["top2_score"]), float(row["top3_score"])]
        np.testing.assert_allclose(got, scores[best], atol=2e-3)


def test_api_rows_table_and_threshold(fast_model, tmp_path):
    features, model = fast_model
    rows = predict(model, features, top_k=2)
    m = load_model(model)
    ff = open_features(features)
    margins = hand_scores(ff.read_features(), m)
    assert len(rows) == 60 and all(isinstance(row, Prediction) for row in rows)
    assert [row.path for row in rows] == ff.paths and rows.skipped == () and not rows.multilabel
    assert [row.predicted for row in rows] == [m.class_names[k] for k in margins.argmax(axis=1)]
    np.testing.assert_allclose([row.score for row in rows], margins.max(axis=1), atol=1e-4)
    assert all(len(row.top) == 2 and row.top[0] == (row.predicted, row.score) and row.scores is None for row in rows)
    # a single-label threshold: the best class only where its margin is above it
    cut = float(np.median(margins.max(axis=1)))
    strict_rows = predict(model, features, threshold=cut)
    assert [row.predicted for row in strict_rows] == [r.predicted if r.score > cut else "" for r in rows]
    assert 0 < sum(row.predicted == "" for row in strict_rows) < 60
    # top_k beyond the classes gives every class; the JSON lines carry the CSV's columns
    wide = predict(model, features, tmp_path / "p.jsonl", top_k=50)
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 60 and all(len(row.top) == 6 for row in wide)
    assert lines[0] == wide[0].columns() and list(lines[0])[:3] == ["path", "predicted", "score"]
    # without --output: a table on stdout, nothing else there; progress and the summary on stderr
    proc = run_sppfeat("predict", model, features)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.splitlines()
    assert table[0].split() == ["predicted", "score", "path"] and len(table) == 61
    assert table[1].split() == [rows[0].predicted, f"{rows[0].score:.3f}", rows[0].path]
    assert "60 images" in proc.stderr
    for bad, message in [({"top_k": 0}, "top_k must be"), ({"threshold": "0.5"}, "threshold must be a number"),
                         ({"output": tmp_path / "p.txt"}, "must end in .csv"),
                         ({"images": tmp_path / "nothing"}, "images: ")]:
        with pytest.raises(ValueError, match=message):
            predict(model, **{"images": features, **bad})


def test_bad_files_among_good_ones_are_skipped_and_listed(fast_model, tmp_path):
    _, model = fast_model
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("image_0011.jpg", "image_0012.jpg"):
        shutil.copy(DEMO / "pizza" / name, folder / name)
    data = (DEMO / "starfish" / "image_0011.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.jpg").write_text("not a photo")
    proc = run_sppfeat("predict", model, folder, "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[-1] for line in proc.stdout.splitlines()[1:]] == ["image_0011.jpg", "image_0012.jpg"]
    skipped = proc.stderr.splitlines()
    assert len(skipped) == 2 and "Traceback" not in proc.stderr
    assert any("cut.jpg: cannot decode" in line for line in skipped)
    assert any("notes.jpg: not an image" in line for line in skipped)
    strict = run_cli("predict", model, folder, "--workers", "0", "--strict")
    assert "--strict: notes.jpg: not an image" in one_line_error(strict) and strict.stdout == ""
    single = one_line_error(run_cli("predict", model, folder / "cut.jpg", "--workers", "0"))
    assert "no image of" in single and "cannot decode" in single


def test_refusals_are_one_line_exit_2(fast_model, demo_features, tmp_path):
    """An empty folder, a feature file of other settings or of another backbone, a model of a backbone
    whose weights are not available offline, weights that are not the model's, bad or existing output."""
    fast_features, fast = fast_model
    (tmp_path / "empty").mkdir()
    assert "no images found" in one_line_error(run_sppfeat("predict", fast, tmp_path / "empty"))  # real entry point
    message = one_line_error(run_cli("predict", fast, demo_features))
    assert "extracted with" in message and "the model with" in message
    lite1 = tmp_path / "lite1.h5"
    extract(DEMO / "pizza", lite1, fast_config(backbone="efficientnet_lite1"), one_process(), quiet=True)
    assert "extracted with --backbone efficientnet_lite1" in one_line_error(run_cli("predict", fast, lite1))
    for changes, expected in [({"backbone": "resnet50"}, "resnet50"),
                              ({"weights_sha256": "0" * 64}, "not the weights file the settings were made with")]:
        other = tmp_path / f"model_{len(changes)}_{expected[:4]}.h5"
        shutil.copy(fast, other)
        with h5py.File(other, "r+") as f:
            f.attrs["feature_config"] = json.dumps({**json.loads(f.attrs["feature_config"]), **changes})
        assert expected in one_line_error(run_cli("predict", other, DEMO / "pizza", "--workers", "0"))
    (tmp_path / "p.csv").write_text("")
    assert "--overwrite" in one_line_error(run_cli("predict", fast, fast_features, "-o", tmp_path / "p.csv"))
    assert "'--output'" in one_line_error(run_cli("predict", fast, fast_features, "-o", tmp_path / "p.xlsx"))


def test_a_damaged_feature_file_is_one_line_in_every_command_that_reads_it(fast_model, tmp_path):
    fast_features, fast = fast_model
    damaged = tmp_path / "damaged.h5"
    shutil.copy(fast_features, damaged)
    damage_chunk(damaged, 0)
    for args in [("train-svm", damaged, tmp_path / "m.h5", "--C", "1"), ("eval", fast, damaged),
                 ("predict", fast, damaged)]:
        assert f"{damaged} is damaged: its features rows 0-" in one_line_error(run_cli(*args)), args


def test_a_damaged_model_file_is_one_line_in_info_eval_and_predict(fast_model, tmp_path):
    """sppfeat_kind says svm_model, but arrays or attributes are missing, broken or do not fit."""
    fast_features, fast = fast_model
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f.attrs["sppfeat_kind"] = "svm_model"
    expected = {bare: " (KeyError: "}

    def changed(name: str, change, message: str) -> None:
        path = tmp_path / f"{name}.h5"
        shutil.copy(fast, path)
        with h5py.File(path, "r+") as f:
            change(f)
        expected[path] = message

    changed("nan", lambda f: f["coef"].__setitem__(0, np.nan), ": its SVMs are not finite (NaN or infinity)")
    changed("shape", lambda f: (f.__delitem__("intercept"), f.create_dataset("intercept", data=np.zeros(2))),
            f": SVMs of shape {load_model(fast).coef.shape} and biases of shape (2,) for 6 class names")
    changed("json", lambda f: f.attrs.__setitem__("split", "{"), " (JSONDecodeError: ")
    for path, message in expected.items():
        for args in [("info", path), ("eval", path, fast_features), ("predict", path, fast_features)]:
            line = one_line_error(run_cli(*args))
            assert line.startswith(f"sppfeat: {path} is a damaged SVM model file{message}"), (args, line)


def test_ctrl_c_keeps_the_rows_so_far(fast_model, tmp_path):
    _, model = fast_model
    folder = tmp_path / "many"
    for src in sorted(DEMO.rglob("*.jpg")):
        (folder / src.parent.name).mkdir(parents=True, exist_ok=True)
        for copy in range(5):
            shutil.copy(src, folder / src.parent.name / f"{src.stem}_{copy}.jpg")
    out = tmp_path / "pred.csv"
    proc = subprocess.Popen(sppfeat_command("predict", model, folder, "-o", out, "--workers", "1",
                                            "--batch-size", "4"),
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while (not out.exists() or len(out.read_text().splitlines()) < 9) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group, workers included
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted by SIGINT after" in lines[0] and "Traceback" not in err
    rows = read_csv(out)
    assert 8 <= len(rows) < 300 and f"the {len(rows)} rows so far are in {out}" in lines[0]
    assert all(row["predicted"] and float(row["score"]) == float(row["score"]) for row in rows)


def test_float16_features_and_multi_scale_settings_come_from_the_model(tmp_path):
    """A model trained on float16 vectors of two scales: predict on the images gives the stored vectors'
    margins, so the settings (scales, dtype) were rebuilt from the model, not from defaults."""
    folder = tmp_path / "two"
    for cls in ("pizza", "starfish"):
        shutil.copytree(DEMO / cls, folder / cls)
    features = tmp_path / "f16.h5"
    extract(folder, features, fast_config(scales=(64, 96), dtype="float16"), one_process(), quiet=True)
    train_svm(features, tmp_path / "m.h5", C=1.0, protocol="stratified")
    from_images = predict(tmp_path / "m.h5", folder, runtime=one_process())
    from_file = predict(tmp_path / "m.h5", features)
    assert [r.path for r in from_images] == [r.path for r in from_file]
    np.testing.assert_allclose([r.score for r in from_images], [r.score for r in from_file], atol=2e-3)
    assert [r.predicted for r in from_images] == [r.predicted for r in from_file]
    report = evaluate(tmp_path / "m.h5", features)
    assert {p.path: p.predicted for p in report.predictions} == {
        r.path: r.predicted for r in from_images if r.path in {p.path for p in report.predictions}}
