"""Proposals, training with hard negatives, detect and eval-detections on a few real VOC 2007
images of the shared sample (small settings so that they take seconds; skipped without ../shared)."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SUBPROCESS_TIMEOUT, VOC_SAMPLE, interrupt_at_call, run_sppfeat
from sppfeat.detection.model import load_detector

VOC = VOC_SAMPLE / "VOCdevkit" / "VOC2007"
IDS = ["000012", "000017", "000023", "000033", "000034", "000044", "000048", "000061"]
pytestmark = pytest.mark.skipif(not VOC.is_dir(), reason="needs ../shared/data/voc2007-sample")
FAST = {"scales": (160,), "levels": (2, 1)}


@pytest.fixture(scope="module")
def voc_small(tmp_path_factory):
    """8 train images (symlinks) and their official annotations, a broken file among the images."""
    root = tmp_path_factory.mktemp("voc")
    (root / "images").mkdir()
    (root / "boxes").mkdir()
    for i in IDS:
        os.symlink(VOC / "JPEGImages" / f"{i}.jpg", root / "images" / f"{i}.jpg")
        os.symlink(VOC / "Annotations" / f"{i}.xml", root / "boxes" / f"{i}.xml")
    return root


@pytest.fixture(scope="module")
def proposal_file(voc_small):
    from sppfeat.detection.proposals import ProposalConfig, proposals

    out = voc_small / "proposals.h5"
    proposals(voc_small / "images", out, ProposalConfig(max_side=200), cores=1, quiet=True)
    return out


def test_proposals_cover_most_objects(voc_small, proposal_file):
    from sppfeat.data.boxes import read_boxes
    from sppfeat.detection.geometry import iou
    from sppfeat.detection.proposal_file import read_proposals

    found = read_proposals(proposal_file)
    truth = read_boxes(voc_small / "boxes")
    assert found.paths == [f"{i}.jpg" for i in IDS]
    assert found.settings["max_side"] == 200 and found.settings["implementation"].startswith("opencv")
    hits = []
    for k, path in enumerate(truth.paths):
        windows = found.of(path)
        assert 0 < len(windows) <= 2000
        h, w = found.image_sizes[found.paths.index(path)]
        assert windows[:, 2].max() <= w and windows[:, 3].max() <= h and (windows[:, :2] >= 0).all()
        objects = truth.boxes[(truth.image == k) & ~truth.difficult]
        hits.extend(iou(objects, windows).max(axis=1) >= 0.5)
    assert np.mean(hits) >= 0.7  # selective search finds most objects even at 200 px


def test_interrupted_proposals_resume_to_the_same_file(voc_small, proposal_file, tmp_path, monkeypatch):
    from sppfeat.detection import proposals as module
    from sppfeat.detection.proposal_file import read_proposals
    from sppfeat.features.interrupts import ExtractionInterrupted

    images = tmp_path / "images"
    images.mkdir()
    for i in IDS:
        os.symlink(VOC / "JPEGImages" / f"{i}.jpg", images / f"{i}.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    calls = []
    real = module.propose_file

    def stop_at_the_sixth(path, config):
        calls.append(path)
        if len(calls) == 6:
            raise ExtractionInterrupted(2)
        return real(path, config)

    monkeypatch.setattr(module, "propose_file", stop_at_the_sixth)
    config = module.ProposalConfig(max_side=200)
    out = tmp_path / "p.h5"
    with pytest.raises(ExtractionInterrupted, match="after 5 of 9 images"):
        module.proposals(images, out, config, cores=1, quiet=True)
    assert not out.exists() and (tmp_path / "p.h5.parts").is_dir()
    with pytest.raises(ValueError, match="resume=True"):
        module.proposals(images, out, config, cores=1, quiet=True)
    monkeypatch.setattr(module, "propose_file", real)
    result = module.proposals(images, out, config, cores=1, quiet=True, resume=True)
    assert result.skipped[0][0] == "broken.jpg" and "undecodable" in result.skipped[0][1]
    resumed, whole = read_proposals(out), read_proposals(proposal_file)
    assert resumed.paths == whole.paths
    np.testing.assert_array_equal(resumed.boxes, whole.boxes)
    assert not (tmp_path / "p.h5.parts").exists()


def test_mining_keeps_the_rules(voc_small, proposal_file, tmp_path, caplog):
    from sppfeat import ExtractionConfig
    from sppfeat.detection.geometry import iou
    from sppfeat.detection.maps import MapFile, RegionVectors
    from sppfeat.detection.mining import fit_detector
    from sppfeat.detection.settings import TrainingSettings
    from sppfeat.detection.proposal_file import read_proposals
    from sppfeat.detection.training import WindowSource, prepare_images, read_truth, truth_of

    settings = TrainingSettings(rounds=2, initial_negatives=10, regression=True, mirror=True)
    truth, skipped = read_truth(voc_small / "images", voc_small / "boxes", "auto")
    rv = RegionVectors(ExtractionConfig(**FAST), "cpu")
    source = WindowSource(read_proposals(proposal_file), None)
    maps = MapFile(tmp_path / "maps.f16")
    images, notes = prepare_images(rv, truth, voc_small / "images", source, settings, maps, quiet=True)
    assert len(images) == len(IDS) and not skipped
    first = rv.image_map(str(voc_small / "images" / truth.paths[0]))
    assert torch.equal(images[0].image_map.load().fmap, first.fmap)  # the map file gives the map back
    n_easy = np.bincount(truth.labels[~truth.difficult], minlength=len(truth.class_names))
    fitted = fit_detector(images, len(truth.class_names), rv, settings, quiet=True)
    assert fitted.stats["positives"] == (2 * n_easy).tolist()  # each object and its mirror image
    assert 2 <= len(fitted.stats["mining"]) <= 3
    for i, image in enumerate(images):
        boxes, labels, _ = truth_of(truth, i)
        cached = np.asarray(image.cached)
        for k in np.flatnonzero(cached.any(axis=0)):
            windows = image.windows[cached[:, k]]
            of_class = boxes[labels == k]  # difficult boxes included: a window near one is no negative
            if len(of_class):
                assert iou(windows, of_class).max() < 0.3
    classes = fitted.coef.any(axis=1)
    assert classes.tolist() == (n_easy > 0).tolist()  # a class without positives learns nothing
    assert not any(np.asarray(image.cached)[:, n_easy == 0].any() for image in images)  # and keeps no negatives
    # the trained SVMs score each object above every cached negative of its class on most objects
    scores = [images[i].positives(rv) @ fitted.coef.T + fitted.intercept for i in range(len(images))]
    assert np.mean([s[j, k] > -0.5 for i, s in enumerate(scores) for j, k in enumerate(images[i].positive_labels)]) > 0.8
    assert fitted.regression.shape == (len(truth.class_names), 4, rv.dim + 1)
    # each class's regressor W minimises |[X 1]W - T|² + λ|W|²: its gradient [X 1]ᵀ([X 1]W - T) + λW is zero
    from sppfeat.detection.geometry import regression_targets
    x = np.concatenate([rv.pool(im.image_map.load(), im.windows[im.reg_windows]) for im in images])
    t = np.concatenate([regression_targets(im.windows[im.reg_windows], im.reg_targets) for im in images])
    labels = np.concatenate([im.reg_labels for im in images])

    def assert_ridge(w, rows):
        xk = np.hstack([x[rows].astype(np.float64), np.ones((len(rows), 1))])
        gradient = xk.T @ (xk @ w.T.astype(np.float64) - t[rows]) + settings.ridge * w.T
        assert np.abs(gradient).max() < 1e-3 * max(1.0, np.abs(xk.T @ t[rows]).max())

    for k in np.unique(labels):
        assert_ridge(fitted.regression[k], np.flatnonzero(labels == k))
    # memory bounds: at most 3 samples per class, drawn under the seed, each regressor the ridge solution on them
    from sppfeat.detection.regression import class_samples, fit_regression
    few = dataclasses.replace(settings, regression_per_class=3)
    regression, rng = fit_regression(images, len(truth.class_names), rv, few), np.random.default_rng(few.seed)
    for k in range(len(truth.class_names)):
        rows = class_samples(labels, k, 3, rng)
        assert len(rows) == min(3, (labels == k).sum()) and (labels[rows] == k).all()
        if len(rows) == 0:
            assert not regression[k].any()
            continue
        assert_ridge(regression[k], rows)
    # and a cache of 60 vectors: fewer initial negatives per image, and never more than 60 windows held after a round
    small = dataclasses.replace(settings, negative_cache=60)
    with caplog.at_level("INFO", logger="sppfeat"):
        bounded = fit_detector(images, len(truth.class_names), rv, small)
    assert bounded.stats["initial_per_image"] == max(1, 60 // 4 // len(images)) < settings.initial_negatives
    assert sum(r["trimmed"] for r in bounded.stats["mining"]) > 0
    assert "easiest dropped to stay within --negative-cache" in caplog.text  # the user is told
    assert caplog.text.count("peak memory") == len(bounded.stats["mining"]) + 1  # each round and the regression
    assert sum(int(np.asarray(image.cached).any(axis=1).sum()) for image in images) <= 60


def test_commands_from_photos_to_average_precision(voc_small, proposal_file, tmp_path):
    model, dets = tmp_path / "det.h5", tmp_path / "dets.csv"
    r = run_sppfeat("train-detector", voc_small / "images", voc_small / "boxes", model, "--proposals", proposal_file,
                    "--scale", 160, "--rounds", 1, "--negative-cache", 5000, "--no-head",
                    env={**os.environ, "SPPFEAT_PROGRESS_SECONDS": "0"})
    assert r.returncode == 0 and "1 mining rounds" in r.stderr, r.stderr
    for round_ in (0, 1):  # a progress line as each class's SVM is trained, not silence for the whole round
        assert f"sppfeat: round {round_} SVMs 20/20 classes, " in r.stderr, r.stderr
    r = run_sppfeat("info", model)
    summary = "sppfeat detector (20 classes × 17920 dims, linear SVMs, box regression; scores are margins)"
    assert r.returncode == 0 and summary in r.stdout, r.stderr
    assert f"{len(IDS)} images" in r.stdout and "1 mining rounds" in r.stdout
    training = load_detector(model).training  # the settings as given, the rounds' record beside them
    assert training["rounds"] == 1 and len(training["mining"]) == 2 and training["negative_cache"] == 5000
    r = run_sppfeat("detect", model, voc_small / "images", "--proposals", proposal_file, "-o", dets,
                    "--draw", tmp_path / "drawn", "-q")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(dets)))
    assert list(rows[0]) == ["path", "x1", "y1", "x2", "y2", "label", "score"]
    per_image = {}
    for row in rows:
        per_image[row["path"]] = per_image.get(row["path"], 0) + 1
    assert set(per_image) <= {f"{i}.jpg" for i in IDS} and max(per_image.values()) <= 100
    # a threshold keeps exactly the detections above it, at the same boxes (NMS and voting see every window)
    r = run_sppfeat("detect", model, voc_small / "images", "--proposals", proposal_file, "-o", tmp_path / "t.csv",
                    "--threshold", 0, "-q")
    assert r.returncode == 0, r.stderr
    above = [row for row in rows if float(row["score"]) > 0]
    assert above and list(csv.DictReader(open(tmp_path / "t.csv"))) == above
    drawn = Image.open(tmp_path / "drawn" / f"{IDS[0]}.png")
    assert drawn.size == Image.open(VOC / "JPEGImages" / f"{IDS[0]}.jpg").size
    r = run_sppfeat("eval-detections", dets, voc_small / "boxes", "--report", tmp_path / "r.json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0.5 < report["mAP"] <= 1  # its own training images: it must find most of their objects
    assert report["ap"]["cow"] is None  # no cow in these images
    r = run_sppfeat("eval-detections", dets, voc_small / "boxes", "--report", tmp_path / "r.json")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--overwrite" in r.stderr


def test_detections_of_unknown_images_are_named_and_counted(voc_small, tmp_path):
    dets = tmp_path / "d.csv"
    dets.write_text("path,x1,y1,x2,y2,label,score\n000012.jpg,1,1,50,50,car,0.5\nnot-here.jpg,1,1,9,9,car,0.9\n")
    r = run_sppfeat("eval-detections", dets, voc_small / "boxes")
    assert r.returncode == 0
    assert r.stderr.startswith("sppfeat: 1 detections name 1 images absent") and r.stderr.count("\n") == 1


def test_detect_resumes_an_interrupted_run(voc_small, proposal_file, tmp_path, monkeypatch):
    from sppfeat import ExtractionConfig
    from sppfeat.detection import inference
    from sppfeat.detection.settings import TrainingSettings
    from sppfeat.detection.training import train_detector
    from sppfeat.features.interrupts import ExtractionInterrupted

    model = tmp_path / "m.h5"
    train_detector(voc_small / "images", voc_small / "boxes", model, proposals=proposal_file,
                   config=ExtractionConfig(**FAST), settings=TrainingSettings(rounds=0, regression=False), quiet=True)
    whole = inference.detect(model, voc_small / "images", tmp_path / "whole.jsonl", proposals=proposal_file, quiet=True)
    real = interrupt_at_call(monkeypatch, inference, "detect_windows", 3, 15)
    out = tmp_path / "dets.jsonl"
    with pytest.raises(ExtractionInterrupted, match="SIGTERM after 2 of 8 images"):
        inference.detect(model, voc_small / "images", out, proposals=proposal_file, quiet=True)
    monkeypatch.setattr(inference, "detect_windows", real)
    resumed = inference.detect(model, voc_small / "images", out, proposals=proposal_file, quiet=True, resume=True)
    assert out.read_text() == (tmp_path / "whole.jsonl").read_text() and len(resumed) == len(whole) > 0


@pytest.mark.parametrize("launch", ["shards", "torchrun"])
def test_proposal_shards_merge_to_the_single_run(voc_small, proposal_file, tmp_path, launch):
    from sppfeat.detection.proposal_file import read_proposals

    if launch == "torchrun":
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                            "sppfeat", "proposals", str(voc_small / "images"), str(tmp_path / "p.h5"), "--search-side",
                            "200", "-q"], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path / "p.shard-00001-of-00002.h5").is_file()
    for i in range(3 if launch == "shards" else 0):
        r = run_sppfeat("proposals", voc_small / "images", tmp_path / "p.h5", "--shard", f"{i}/3", "--search-side", 200,
                        "--cores", 1, "-q")
        assert r.returncode == 0, r.stderr
    if launch == "shards":
        r = run_sppfeat("merge", *[tmp_path / f"p.shard-0000{i}-of-00003.h5" for i in range(3)], tmp_path / "p.h5")
        assert r.returncode == 0 and r.stderr == "sppfeat: " + str(tmp_path / "p.h5") + ": 3 proposal shards joined\n"
    merged, whole = read_proposals(tmp_path / "p.h5"), read_proposals(proposal_file)
    assert merged.paths == whole.paths and merged.skipped == whole.skipped
    np.testing.assert_array_equal(merged.boxes, whole.boxes)
    np.testing.assert_array_equal(merged.first, whole.first)


def test_a_head_detects_with_probabilities(voc_small, proposal_file, tmp_path):
    model, dets = tmp_path / "head.h5", tmp_path / "dets.csv"
    r = run_sppfeat("train-detector", voc_small / "images", voc_small / "boxes", model, "--proposals", proposal_file,
                    "--scale", 160, "--levels", "2,1", "--head", "--head-epochs", 20, "--head-reduce", 32,
                    "--head-hidden", 64, "--head-lr", 0.003)
    assert r.returncode == 0 and "head trained 20 epochs" in r.stderr, r.stderr
    assert "head epoch 20/20" in r.stderr  # a progress line per epoch
    trained = load_detector(model)
    assert trained.score_kind == "probability" and trained.training["head"]["hidden"] == [64]
    r = run_sppfeat("info", model)
    assert r.returncode == 0 and "fine-tuned head" in r.stdout and "probabilities" in r.stdout, r.stdout
    r = run_sppfeat("detect", model, voc_small / "images", "--proposals", proposal_file, "-o", dets, "-q")
    assert r.returncode == 0, r.stderr
    scores = [float(row["score"]) for row in csv.DictReader(open(dets))]
    assert scores and 0 <= min(scores) and max(scores) <= 1
    r = run_sppfeat("detect", model, voc_small / "images", "--proposals", proposal_file, "--threshold", 1.5)
    assert r.returncode == 2 and r.stderr == "sppfeat: --threshold 1.5 with probabilities (in [0, 1]): keep it in " \
                                             "[0, 1)\n", r.stderr
    r = run_sppfeat("eval-detections", dets, voc_small / "boxes", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] > 0.35  # its own images (0.49 at these tiny sizes)
    r = run_sppfeat("train-detector", voc_small / "images", voc_small / "boxes", tmp_path / "x.h5", "--proposals",
                    proposal_file, "--scale", 160, "--head", "--head-lr", 1e9, "--head-epochs", 2)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "diverged" in r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_context_pairs_each_window_with_its_enlarged_window(voc_small, proposal_file):
    from sppfeat import ExtractionConfig
    from sppfeat.detection.maps import RegionVectors
    from sppfeat.detection.proposal_file import read_proposals

    plain, wide = RegionVectors(ExtractionConfig(**FAST), "cpu"), RegionVectors(ExtractionConfig(**FAST), "cpu", 1.5)
    image = plain.image_map(str(voc_small / "images" / f"{IDS[0]}.jpg"))
    height, width = image.stored_size
    windows = np.vstack([read_proposals(proposal_file).of(f"{IDS[0]}.jpg")[:300], [[0, 0, width, height]]])
    enlarged = []
    for x0, y0, x1, y1 in windows:  # by hand: the centre kept, each side 1.5 times as long, cut at the image's edges
        cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * (x1 - x0), 0.75 * (y1 - y0)
        enlarged.append([max(0, cx - half_w), max(0, cy - half_h), min(width, cx + half_w), min(height, cy + half_h)])
    expected = np.hstack([plain.pool(image, windows), plain.pool(image, np.array(enlarged))]) / np.sqrt(2)
    assert wide.dim == 2 * plain.dim
    pooled = wide.pool(image, windows)
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1, rtol=1e-5)


def test_a_detector_with_context_records_it_and_detects(voc_small, proposal_file, tmp_path):
    model, dets = tmp_path / "context.h5", tmp_path / "dets.csv"
    r = run_sppfeat("train-detector", voc_small / "images", voc_small / "boxes", model, "--proposals", proposal_file,
                    "--scale", 160, "--levels", "2,1", "--rounds", 1, "--context", 1.5)
    assert r.returncode == 0, r.stderr
    trained = load_detector(model)
    assert trained.context == 1.5 and trained.coef.shape[1] == 2 * 1280 * 5  # inner and enlarged: 2 × 1,280 · (4 + 1)
    r = run_sppfeat("info", model)
    assert r.returncode == 0 and "12800 dims, linear SVMs on windows with context ×1.5" in r.stdout, r.stdout
    r = run_sppfeat("detect", model, voc_small / "images", "--proposals", proposal_file, "-o", dets, "-q")
    assert r.returncode == 0, r.stderr
    r = run_sppfeat("eval-detections", dets, voc_small / "boxes", "--report", tmp_path / "r.json")
    assert r.returncode == 0 and json.loads((tmp_path / "r.json").read_text())["mAP"] > 0.5  # its own images
    for bad in (("--context", 0.5), ("--context", 1.5, "--head")):
        r = run_sppfeat("train-detector", voc_small / "images", voc_small / "boxes", tmp_path / "x.h5", *bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--context" in r.stderr, r.stderr
