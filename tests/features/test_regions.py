"""sppfeat regions: one row per box, against independent references (extract's whole-image rows, the
cropped conv map, single-scale runs), bad boxes, EXIF orientation, VOC difficult flags, train-svm and
eval on a box file, resume after kill -9, shards and merge."""

import json
import subprocess

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from click.testing import CliRunner

from conftest import DEMO, assert_same_rows, cosine, fast_config, one_process, run_sppfeat, sppfeat_command, voc_xml
from sppfeat import describe_regions, extract, merge, regions
from sppfeat.cli import main
from sppfeat.backbones.geometry import cell_centres, trace_layers
from sppfeat.data.decode import ResizePolicy, decode_image
from sppfeat.features.boxes import RegionItem
from sppfeat.features.descriptor import build_descriptor
from sppfeat.pyramid import spatial_pyramid_pool
from sppfeat.shards import shard_path
from sppfeat.storage.feature_file import open_features
from sppfeat.storage.progress import ProgressFolder, SegmentBuffer, parts_path
from test_projection import brute_force_cells
from test_resume import segments_written, wait_for_segments

CONFIG = fast_config(scales=(96,))
FAST = ["--scale", "96", "--levels", "2,1", "--dtype", "float32", "--workers", "1", "-q"]
BOX_DATASETS = ("boxes", "box_image", "scale_used", "difficult", "images/paths", "images/sizes")


def image_size(path):
    with Image.open(path) as im:
        return im.size  # (width, height); the demo photos have no EXIF orientation


@pytest.fixture(scope="module")
def box_csv(tmp_path_factory):
    """Three boxes per demo photo labelled with its class (the whole photo, its middle, a small corner
    box), one empty box, one box outside the photo, and the boxes of a photo that does not exist."""
    lines = ["path,x1,y1,x2,y2,label"]
    for path in sorted(DEMO.rglob("*.jpg")):
        rel, label = path.relative_to(DEMO).as_posix(), path.parent.name
        w, h = image_size(path)
        lines += [f"{rel},0,0,{w},{h},{label}", f"{rel},{w / 4},{h / 4},{3 * w / 4},{3 * h / 4},{label}",
                  f"{rel},3,5,{w / 5},{h / 6},{label}"]
    lines += ["pizza/image_0011.jpg,10,10,10,40,pizza", f"pizza/image_0012.jpg,{10_000},0,{10_010},9,pizza",
              "pizza/gone.jpg,1,1,9,9,pizza"]
    path = tmp_path_factory.mktemp("boxes") / "boxes.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(box_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("regions") / "ref.h5"
    regions(DEMO, box_csv, out, CONFIG, one_process(), quiet=True)
    return out


def datasets(path):
    with h5py.File(path, "r") as f:
        return {name: f[name].asstr()[()] if h5py.check_string_dtype(f[name].dtype) else f[name][()]
                for name in BOX_DATASETS}


def assert_same_box_file(path, reference_path):
    assert_same_rows(path, reference_path)
    got, expected = datasets(path), datasets(reference_path)
    for name in BOX_DATASETS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_schema_rows_and_skips(reference):
    ff, data = open_features(reference), datasets(reference)
    assert len(ff.paths) == 180 and ff.dim == 1280 * 5 and ff.record["combine"] == "max"
    assert data["images/paths"].tolist() == sorted(p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*.jpg"))
    # every row: path#k of its image, the image's size, its box as given, its class
    for row in (0, 1, 2, 99, 179):
        image = data["box_image"][row]
        path = data["images/paths"][image]
        assert ff.paths[row] == f"{path}#{row % 3}" and ff.class_names[ff.labels[row]] == path.split("/")[0]
        w, h = image_size(DEMO / path)
        assert ff.image_sizes[row].tolist() == data["images/sizes"][image].tolist() == [h, w]
    assert data["boxes"][0].tolist() == [0, 0, *image_size(DEMO / data["images/paths"][0])]
    assert (data["scale_used"] == 96).all() and not data["difficult"].any()
    assert sorted(ff.skipped) == [  # the empty box is refused as it is read: line 1 + 3 · 60 + 1 of the CSV
        ("boxes.csv", "line 182 (pizza/image_0011.jpg, pizza) x1 10 = x2 10 (zero width)"),
        ("pizza/gone.jpg", "missing file (1 boxes)"),
        ("pizza/image_0012.jpg", "box outside the image (box 3: 10000, 0, 10010, 9)")]


def test_whole_image_boxes_equal_the_rows_of_extract(reference, tmp_path):
    whole = extract(DEMO, tmp_path / "whole.h5", CONFIG, one_process(), quiet=True)
    images, boxes = open_features(whole.path), open_features(reference)
    rows = np.arange(0, 180, 3)  # box 0 of every photo
    assert [boxes.paths[r] for r in rows] == [f"{p}#0" for p in images.paths]
    assert cosine(boxes.read_features(rows), images.read_features()).min() >= 0.9999


def test_box_rows_equal_pooling_the_cropped_map(reference):
    """Independent path: the network's map of the decoded photo, cells found by a brute-force loop over
    the centres, spatial_pyramid_pool of the map cropped to them."""
    model, _, _ = build_descriptor(CONFIG, torch.device("cpu"))
    layers = trace_layers(model.trunk)
    ff, data = open_features(reference), datasets(reference)
    for row in (1, 2, 50, 121, 179):
        path = DEMO / data["images/paths"][data["box_image"][row]]
        pixels = decode_image(str(path), CONFIG.resolved("folder", None, "cpu").resize_policies()[0]).pixels
        with torch.inference_mode():
            fmap = model.feature_map(torch.from_numpy(pixels[None]))[0]
        size = tuple(ff.image_sizes[row])
        rows, cols = cell_centres(layers, pixels.shape[0], 0), cell_centres(layers, pixels.shape[1], 1)
        x0, y0, x1, y1 = brute_force_cells(data["boxes"][row].tolist(), size, pixels.shape[:2], rows, cols)
        expected = spatial_pyramid_pool(fmap[:, y0:y1, x0:x1], CONFIG.levels).numpy()
        np.testing.assert_allclose(ff.read_features(np.array([row]))[0], expected, rtol=1e-4, atol=1e-4)


def test_several_scales_best_and_max_against_single_scale_runs(tmp_path):
    photo = DEMO / "starfish" / "image_0011.jpg"
    w, h = image_size(photo)
    boxes = np.array([[0, 0, w, h], [10, 10, 40, 40], [w / 3, h / 3, 2 * w / 3, 2 * h / 3], [5, 2, w - 9, h / 2]])
    scales = (64, 160, 320)
    single = [describe_regions(photo, boxes, fast_config(scales=(s,))) for s in scales]
    best = fast_config(scales=scales, combine="best")
    sizes = [ResizePolicy(s).target_size(h, w)[:2] for s in scales]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    chosen = [int(np.argmin([abs(a * sh / h * sw / w - 224 * 224) for sh, sw in sizes])) for a in areas]
    assert len(set(chosen)) > 1  # the boxes really choose different scales
    np.testing.assert_allclose(describe_regions(photo, boxes, best), [single[k][i] for i, k in enumerate(chosen)],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(describe_regions(photo, boxes, fast_config(scales=scales, combine="max")),
                               np.maximum.reduce(single), rtol=1e-5, atol=1e-5)
    csv = tmp_path / "b.csv"
    csv.write_text("path,x1,y1,x2,y2\n" + "".join(f"starfish/image_0011.jpg,{','.join(map(str, b))}\n" for b in boxes))
    regions(DEMO, csv, tmp_path / "best.h5", best, one_process(), quiet=True)
    assert datasets(tmp_path / "best.h5")["scale_used"].tolist() == [scales[k] for k in chosen]
    with pytest.raises(ValueError, match="combine='best'"):
        extract(DEMO, tmp_path / "x.h5", best, one_process(), quiet=True)


def test_boxes_refer_to_the_pixels_as_stored_before_exif_orientation(tmp_path):
    """A photo stored rotated with orientation 6 (shown turned 90° clockwise, i.e. upright): a box on
    the stored pixels describes what the same box, turned, describes on the upright photo."""
    upright = np.asarray(Image.open(DEMO / "pizza" / "image_0011.jpg").convert("RGB"))
    h, w = upright.shape[:2]
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # w × h; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.png", exif=exif)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    box_upright = np.array([[20.0, 10.0, 90.0, 70.0]])  # x1, y1, x2, y2 on the upright photo
    x1, y1, x2, y2 = box_upright[0]
    box_stored = np.array([[y1, w - x2, y2, w - x1]])  # the same pixels in the stored (rotated) array
    assert (stored[int(w - x2):int(w - x1), int(y1):int(y2)] == np.rot90(upright[10:70, 20:90], 1)).all()
    np.testing.assert_allclose(describe_regions(tmp_path / "rotated.png", box_stored, CONFIG),
                               describe_regions(tmp_path / "upright.png", box_upright, CONFIG), rtol=1e-5, atol=1e-5)


def test_describe_regions_names_the_bad_box():
    photo = DEMO / "pizza" / "image_0011.jpg"
    with pytest.raises(ValueError, match=r"boxes\[1\]: inverted box"):
        describe_regions(photo, [[0, 0, 9, 9], [9, 9, 0, 0]], CONFIG)
    with pytest.raises(ValueError, match="boxes must be a K×4 array"):
        describe_regions(photo, [1, 2, 3], CONFIG)
    with pytest.raises(ValueError, match="image: file not found"):
        describe_regions(DEMO / "nothing.jpg", [[0, 0, 9, 9]], CONFIG)


def test_voc_xml_difficult_boxes_are_flagged_and_left_out(tmp_path):
    folder = tmp_path / "Annotations"
    folder.mkdir()
    for k, path in enumerate(sorted((DEMO / "starfish").glob("*.jpg"))[:3]):
        w, h = image_size(path)
        (folder / f"{k}.xml").write_text(voc_xml(f"starfish/{path.name}", [([0, 0, w, h], "cat", False),
                                                                           ([2, 2, w // 2, h // 2], "dog", k == 1)]))
    regions(DEMO, folder, tmp_path / "voc.h5", CONFIG, one_process(), quiet=True)
    ff = open_features(tmp_path / "voc.h5")
    assert datasets(tmp_path / "voc.h5")["difficult"].tolist() == [0, 0, 0, 1, 0, 0]
    assert ff.labels.tolist() == [7, 11, 7, -1, 7, 11] and ff.record["dataset"] == "voc-xml"


def test_train_svm_and_eval_work_on_a_box_file(reference, tmp_path):
    model = tmp_path / "svm.h5"
    assert CliRunner().invoke(main, ["train-svm", str(reference), str(model), "--C", "1"]).exit_code == 0
    evaluated = CliRunner().invoke(main, ["eval", str(model), str(reference), "--report", str(tmp_path / "r.json")])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_test"] == 48 and report["accuracy"] >= 0.8  # 25 % of each class's 30 boxes; chance 1/6


def test_resume_after_kill_gives_the_uninterrupted_file(box_csv, reference, tmp_path):
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(sppfeat_command("regions", DEMO, box_csv, out, *FAST, "--checkpoint-every", "2"),
                            stderr=subprocess.PIPE)
    wait_for_segments(proc, out, 3, 120, 0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.kill()
    proc.wait()
    assert not out.exists() and segments_written(out) >= 3
    again = run_sppfeat("regions", DEMO, box_csv, out, *FAST, "--checkpoint-every", "2", "--resume")
    assert again.returncode == 0, again.stderr
    assert_same_box_file(out, reference)
    assert not parts_path(out).exists()


def test_two_shards_merge_into_the_single_run(box_csv, reference, tmp_path):
    out = tmp_path / "all.h5"
    for i in range(2):
        regions(DEMO, box_csv, out, CONFIG, one_process(), shard=(i, 2), quiet=True)
    shards = [shard_path(out, i, 2) for i in range(2)]
    assert datasets(shards[1])["box_image"].min() == 30  # global image indices in the second shard
    merge(shards, out)
    assert_same_box_file(out, reference)
    merge(shards, tmp_path / "copy.h5", consolidate=True)
    assert_same_box_file(tmp_path / "copy.h5", reference)


def test_bad_box_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("path,x1,y1\n")
    (tmp_path / "none.csv").write_text("path,x1,y1,x2,y2\nnot/there.jpg,1,1,5,5\n")
    proc = run_sppfeat("regions", DEMO, tmp_path / "bad.csv", tmp_path / "o.h5", *FAST)  # the real entry point
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "the CSV header must be" in lines[0], proc.stderr
    for args, message in (([tmp_path / "none.csv"], "no image of"), ([tmp_path / "nothing.json"], "does not exist"),
                          ([tmp_path / "none.csv", "--combine", "mean"], "'--combine'"),
                          ([tmp_path / "none.csv", "--box-format", "voc-xml"], "voc-xml boxes are a folder")):
        result = CliRunner().invoke(main, ["regions", str(DEMO), str(args[0]), str(tmp_path / "o.h5"), *args[1:]])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o.h5").exists()


def test_progress_segments_are_cut_by_rows_as_well_as_images(tmp_path):
    """Images with many boxes: a segment ends once it holds max_rows rows (memory stays bounded)."""
    progress = ProgressFolder(tmp_path / "o.h5")
    progress.create({"config": {}, "shard": [0, 1], "listing_sha256": "", "n_listed": 4})
    buffer = SegmentBuffer(progress, dim=2, dtype="float32", max_images=100, max_rows=5)
    for index in range(4):
        buffer.add(RegionItem(index, None, (5, 5), False, None, rows=np.full((3, 2), index, np.float32),
                              box_ids=np.arange(3) + 3 * index, scale_used=np.zeros(3, np.int32)))
    buffer.flush()
    segments = [progress.load(info.name, 2) for info in progress.listed()]
    assert [(s.start, s.end) for s in segments] == [(0, 2), (2, 4)]
    assert segments[1].columns["box"].tolist() == [6, 7, 8, 9, 10, 11]
    assert segments[1].features[:, 0].tolist() == [2] * 3 + [3] * 3
