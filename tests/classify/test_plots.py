"""eval --plots and eval's per-image predictions: single-label (the demo images) and multi-label (a
small VOC 2007 devkit cut from the shared sample), and predict on multi-label models."""

import json
import shutil
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import DEMO, VOC_SAMPLE, fast_config, one_process
from sppfeat import evaluate, extract, predict, train_svm
from sppfeat.classify.evaluation import ClassAccuracy, Evaluation, ScoredImage, image_folder
from sppfeat.classify.metrics import average_precision_11pt
from sppfeat.classify.plots import contact_sheet, confusion_figure, confusion_matrix
from sppfeat.cli import main
from sppfeat.data.discover import VOC_CLASSES
from sppfeat.storage.feature_file import open_features
from sppfeat.storage.model_file import load_model


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def png(path) -> Image.Image:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.convert("RGB")


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    """Fast demo features and a model trained on one image per class: it makes mistakes."""
    folder = tmp_path_factory.mktemp("single")
    extract(DEMO, folder / "f.h5", fast_config(), one_process(), quiet=True)
    train_svm(folder / "f.h5", folder / "m.h5", C=1.0, protocol="per-class", train_per_class=1, test_per_class=0)
    return folder / "f.h5", folder / "m.h5"


def test_single_label_plots_and_predictions(single_label, tmp_path):
    features, model = single_label
    result = run_cli("eval", model, features, "--report", tmp_path / "r.json", "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    ff = open_features(features)
    truth = {path: ff.class_names[label] for path, label in zip(ff.paths, ff.labels)}
    assert [p["true"] for p in report["predictions"]] == [truth[p["path"]] for p in report["predictions"]]
    wrong = [p for p in report["predictions"] if p["predicted"] != p["true"]]
    assert wrong and 1 - len(wrong) / report["n_test"] == pytest.approx(report["accuracy"], abs=5e-5)  # 4 decimals
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "confusion_matrix.png", "mistakes.png", "per_class_accuracy.png"]

    matrix = png(tmp_path / "plots" / "confusion_matrix.png")
    assert 400 <= matrix.width <= 1500 and 400 <= matrix.height <= 1500
    pixels = np.asarray(matrix, dtype=np.float64)
    dark_blue = (pixels[..., 2] > 90) & (pixels[..., 0] < 60)  # cells near 1.0 in the Blues map
    assert pixels.std() > 30 and dark_blue.mean() > 0.02
    bars = png(tmp_path / "plots" / "per_class_accuracy.png")
    assert 500 <= bars.width <= 1500 and 250 <= bars.height <= 1000
    sheet = png(tmp_path / "plots" / "mistakes.png")
    rows = -(-min(len(wrong), 24) // 6)
    assert 800 <= sheet.width <= 1200 and 150 * rows < sheet.height < 250 * rows + 100
    assert np.asarray(sheet).std() > 30  # photographs, not empty tiles


def test_confusion_matrix_against_scikit_learn_and_legible_for_102_classes():
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(0)
    names = tuple(f"class_{k:03d}" for k in range(102))
    true = rng.integers(0, 102, 2000)
    predicted = np.where(rng.random(2000) < 0.8, true, rng.integers(0, 102, 2000))
    result = Evaluation(2000, "every row", accuracy=float((true == predicted).mean()), mean_class_accuracy=0.8,
                        per_class={n: ClassAccuracy(0.8, 1) for n in names}, class_names=names,
                        predictions=tuple(ScoredImage(f"{t}.jpg", names[t], names[p], 0.0)
                                          for t, p in zip(true, predicted)))
    expected = sk_confusion(true, predicted, labels=range(102), normalize="true")
    np.testing.assert_allclose(confusion_matrix(result), expected)
    from matplotlib.figure import Figure

    figure = confusion_figure(Figure, result)
    width, height = figure.get_size_inches() * 100
    assert 1700 <= width <= 2500 and 1700 <= height <= 2500  # about 16 px per class at 100 dpi


def test_plot_errors_are_one_line(single_label, tmp_path, monkeypatch):
    features, model = single_label
    for folder, message in [(tmp_path / "no" / "plots", "'--plots': folder"), (features, "'--plots': ")]:
        result = run_cli("eval", model, features, "--plots", folder)
        assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="^plots: folder"):
        evaluate(model, features, plots=tmp_path / "no" / "plots")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    result = run_cli("eval", model, features, "--plots", tmp_path / "plots")
    assert result.exit_code == 2 and "needs matplotlib" in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="needs matplotlib"):  # before the work: no report without the pictures
        evaluate(model, features, tmp_path / "r.json", tmp_path / "plots")
    assert not (tmp_path / "r.json").exists()


def test_existing_report_or_pictures_need_overwrite(single_label, tmp_path):
    """Refused before any work; overwrite removes the pictures of an earlier model (here its
    mistakes sheet, which a model without mistakes does not draw) and keeps other files."""
    features, model = single_label
    plots, report = tmp_path / "plots", tmp_path / "r.json"
    plots.mkdir()
    evaluate(model, features, plots=plots / "empty")  # a new folder is fine, and so is an empty one
    (plots / "new").mkdir()
    evaluate(model, features, report, plots / "new")
    assert (plots / "new" / "mistakes.png").is_file()
    with pytest.raises(ValueError, match=r"r\.json exists; pass overwrite=True to replace it"):
        evaluate(model, features, report, tmp_path / "other")
    with pytest.raises(ValueError, match=r"^plots: .*new is not empty: pass overwrite=True to replace its pictures$"):
        evaluate(model, features, tmp_path / "r2.json", plots / "new")
    assert not (tmp_path / "other").exists() and not (tmp_path / "r2.json").exists()

    for path in load_model(model).train_paths:  # the model's 6 training images, which it classifies right
        (tmp_path / "images" / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / path, tmp_path / "images" / path)
    extract(tmp_path / "images", tmp_path / "train.h5", fast_config(), one_process(), quiet=True)
    (plots / "new" / "notes.txt").write_text("mine")
    result = evaluate(model, tmp_path / "train.h5", report, plots / "new", keep_training_rows=True, overwrite=True)
    assert result.accuracy == 1.0 and json.loads(report.read_text())["n_test"] == 6
    assert sorted(p.name for p in (plots / "new").iterdir()) == [
        "confusion_matrix.png", "notes.txt", "per_class_accuracy.png"]


def test_transparent_images_are_drawn_over_white_as_described(tmp_path):
    """The mistakes sheet shows what the network saw: transparency composited over white."""
    pixels = np.zeros((150, 150, 4), dtype=np.uint8)  # transparent black
    pixels[50:100, 50:100] = (255, 0, 0, 255)  # an opaque red square
    Image.fromarray(pixels, "RGBA").save(tmp_path / "shape.png")
    sheet = np.asarray(contact_sheet([(tmp_path / "shape.png", ["a -> b", "+1.00"])], "title", 1))
    top, left = 40, 8  # the first tile: under the title's two lines, at the margin
    assert sheet[top + 75, left + 75].tolist() == [255, 0, 0]  # the drawn shape
    assert sheet[top + 5, left + 5].tolist() == [255, 255, 255]  # its transparent surroundings


@pytest.fixture(scope="module")
def mini_voc(tmp_path_factory):
    """A VOC2007 devkit of 300 train and 60 val images of the shared sample (their own label lines),
    extracted at 64 px with one 1×1 level, and a model trained on train."""
    if not VOC_SAMPLE.is_dir():
        pytest.skip("needs ../shared/data/voc2007-sample")
    source = VOC_SAMPLE / "VOCdevkit" / "VOC2007"
    root = tmp_path_factory.mktemp("voc") / "VOC2007"
    main_folder = root / "ImageSets" / "Main"
    main_folder.mkdir(parents=True)
    (root / "JPEGImages").symlink_to(source / "JPEGImages")
    for split, n in (("train", 300), ("val", 60)):
        ids = (source / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        (main_folder / f"{split}.txt").write_text("\n".join(ids) + "\n")
        keep = set(ids)
        for name in VOC_CLASSES:
            lines = (source / "ImageSets" / "Main" / f"{name}_{split}.txt").read_text().splitlines()
            (main_folder / f"{name}_{split}.txt").write_text(
                "\n".join(line for line in lines if line.split()[0] in keep) + "\n")
        extract(root, root.parent / f"{split}.h5", fast_config(split=split, levels=(1,)), one_process(), quiet=True)
    train_svm(root.parent / "train.h5", root.parent / "m.h5", C=1.0)
    return root, root.parent


def test_multilabel_plots_and_predictions(mini_voc, tmp_path):
    root, folder = mini_voc
    result = evaluate(folder / "m.h5", folder / "val.h5", tmp_path / "r.json", tmp_path / "plots")
    report = json.loads((tmp_path / "r.json").read_text())
    ff = open_features(folder / "val.h5")
    assert [p["path"] for p in report["predictions"]] == ff.paths
    for entry, targets in zip(report["predictions"], ff.targets):
        assert entry["true"] == [n for n, t in zip(ff.class_names, targets) if t == 1]
        assert entry["difficult"] == [n for n, t in zip(ff.class_names, targets) if t == 0]
        assert entry["predicted"] == sorted((n for n, s in entry["scores"].items() if s > 0),
                                            key=lambda n: -entry["scores"][n])
        assert entry["score"] == max(entry["scores"].values())
    for k, name in enumerate(ff.class_names):  # the per-image scores rebuild eval's APs
        scores = [p["scores"][name] for p in report["predictions"]]
        assert average_precision_11pt(scores, ff.targets[:, k]) == pytest.approx(result.ap[name])

    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "average_precision.png", "false_positives.png", "precision_recall.png"]
    curves = png(tmp_path / "plots" / "precision_recall.png")
    assert 1100 <= curves.width <= 1800 and 800 <= curves.height <= 1400
    assert np.asarray(curves).std() > 20
    bars = png(tmp_path / "plots" / "average_precision.png")
    assert 500 <= bars.width <= 1500 and 300 <= bars.height <= 1000
    sheet = png(tmp_path / "plots" / "false_positives.png")
    assert 700 <= sheet.width <= 1000 and 20 * 150 < sheet.height < 20 * 250
    assert image_folder(ff.record) == root and image_folder({**ff.record, "image_root": "/nowhere"}) is None


def brute_force_ap(scores, targets) -> float:
    """VOC 2007 11-point AP written out rank by rank (difficult images dropped, ties in input order)."""
    order = sorted((i for i in range(len(scores)) if targets[i] != 0), key=lambda i: -scores[i])
    n_pos = sum(targets[i] > 0 for i in order)
    points = [(sum(targets[i] > 0 for i in order[:r]) / n_pos, sum(targets[i] > 0 for i in order[:r]) / r)
              for r in range(1, len(order) + 1)]  # (recall, precision) at each rank
    return sum(max([p for r, p in points if r >= t - 1e-12], default=0.0) for t in np.linspace(0, 1, 11)) / 11


def test_a_class_without_positives_is_left_out_of_the_map_and_the_plots(mini_voc, tmp_path):
    """As in the VOC devkit, AP is undefined without positives: not 0 averaged into the mAP, and
    no empty curve for matplotlib to fail on."""
    from matplotlib.figure import Figure

    from sppfeat.classify.plots import precision_recall_figure
    from sppfeat.report import evaluation_text

    root, folder = mini_voc
    val = tmp_path / "val.h5"
    shutil.copy(folder / "val.h5", val)
    with h5py.File(val, "r+") as f:
        cow = VOC_CLASSES.index("cow")
        targets = f["targets"][()]
        assert (targets[:, cow] > 0).any()
        targets[targets[:, cow] > 0, cow] = -1  # the val images now show no cow
        f["targets"][...] = targets
    result = evaluate(folder / "m.h5", val, tmp_path / "r.json", tmp_path / "plots")
    assert result.no_positives == ("cow",) and set(result.ap) == set(VOC_CLASSES) - {"cow"}
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["no_positives"] == ["cow"] and "cow" not in report["ap"]
    scores = np.array([[image.scores[name] for name in VOC_CLASSES] for image in result.predictions])
    expected = [brute_force_ap(scores[:, k], targets[:, k]) for k, name in enumerate(VOC_CLASSES) if name != "cow"]
    assert result.mAP == pytest.approx(np.mean(expected))
    assert "left out of the mAP (no positives in the test images): cow" in evaluation_text(result).splitlines()
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "average_precision.png", "false_positives.png", "precision_recall.png"]
    assert len(precision_recall_figure(Figure, result).axes) == 19
    with h5py.File(val, "r+") as f:
        f["targets"][...] = -1  # no positive of any class: no mAP at all
    with pytest.raises(ValueError, match="no positive image of any of the model's classes"):
        evaluate(folder / "m.h5", val)


def test_predict_with_a_multilabel_model_on_images(mini_voc, tmp_path):
    """Rows of val images given as a folder: the classes above the threshold, every class's margin,
    equal to eval's on the stored vectors."""
    root, folder = mini_voc
    photos = tmp_path / "photos" / "JPEGImages"
    photos.mkdir(parents=True)
    val = open_features(folder / "val.h5")
    for path in val.paths[:12]:
        shutil.copy(root / path, photos)
    rows = predict(folder / "m.h5", photos.parent, tmp_path / "p.csv", runtime=one_process(), threshold=-0.5)
    assert rows.multilabel and [row.path for row in rows] == val.paths[:12]
    evaluation = {p.path: p for p in evaluate(folder / "m.h5", folder / "val.h5").predictions}
    for row in rows:
        reference = evaluation[row.path].scores
        np.testing.assert_allclose([row.scores[n] for n in reference], list(reference.values()), atol=2e-3)
        assert set(row.predicted) == {n for n, s in row.scores.items() if s > -0.5}
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert header == ["path", "predicted", "score", *[f"score_{n}" for n in VOC_CLASSES]]
