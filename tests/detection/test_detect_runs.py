"""detect at run time, on 4 real VOC 2007 images with a tiny detector trained here: selective search in
worker processes gives the rows of one process, shards and torchrun ranks join into exactly the rows
of a single run, an interrupted run resumes its pictures, a picture shows what its rule keeps, and
the small messages (proposals' skipped files, predict given a detector). Skipped without ../shared."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import SUBPROCESS_TIMEOUT, VOC_SAMPLE, interrupt_at_call, run_sppfeat

VOC = VOC_SAMPLE / "VOCdevkit" / "VOC2007"
IDS = ["000012", "000017", "000023", "000033"]
pytestmark = pytest.mark.skipif(not VOC.is_dir(), reason="needs ../shared/data/voc2007-sample")


def small_settings():
    """Window vectors and selective search small enough for seconds per run."""
    from sppfeat import ExtractionConfig
    from sppfeat.detection.proposals import ProposalConfig

    return ExtractionConfig(scales=(160,), levels=(2, 1)), ProposalConfig(max_side=200, max_boxes=300)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """4 images (symbolic links) and their official annotations."""
    root = tmp_path_factory.mktemp("four")
    for folder in ("images", "boxes"):
        (root / folder).mkdir()
    for i in IDS:
        os.symlink(VOC / "JPEGImages" / f"{i}.jpg", root / "images" / f"{i}.jpg")
        os.symlink(VOC / "Annotations" / f"{i}.xml", root / "boxes" / f"{i}.xml")
    return root


@pytest.fixture(scope="module")
def model(four):
    """A detector trained on the 4 images without mining or regression; it proposes its own windows."""
    from sppfeat.detection.settings import TrainingSettings
    from sppfeat.detection.training import train_detector

    config, search = small_settings()
    out = four / "detector.h5"
    train_detector(four / "images", four / "boxes", out, config=config, proposal_config=search, cores=1,
                   settings=TrainingSettings(rounds=0, regression=False), quiet=True)
    return out


@pytest.fixture(scope="module")
def single(four, model):
    """The reference: every image in one process (selective search here)."""
    from sppfeat.detection.inference import detect

    out = four / "single.csv"
    detect(model, four / "images", out, cores=1, quiet=True)
    return out


def test_selective_search_in_workers_gives_the_rows_of_one_process(four, model, single, tmp_path, monkeypatch):
    from sppfeat.detection import runs
    from sppfeat.detection.inference import detect

    pools = []

    class Counted(runs.Workers):
        def __init__(self, fn, processes):
            pools.append(processes)
            super().__init__(fn, processes)

    monkeypatch.setattr(runs, "Workers", Counted)
    detect(model, four / "images", tmp_path / "workers.csv", cores=2, quiet=True)
    assert pools == [2]  # the windows came from two worker processes
    text = (tmp_path / "workers.csv").read_text()
    assert text == single.read_text() and text.count("\n") > 4


def test_training_windows_from_workers_are_those_of_one_process(four, tmp_path):
    from sppfeat.detection.maps import MapFile, RegionVectors
    from sppfeat.detection.settings import TrainingSettings
    from sppfeat.detection.training import WindowSource, prepare_images, read_truth

    config, search = small_settings()
    truth, _ = read_truth(four / "images", four / "boxes", "auto")
    rv, source = RegionVectors(config, "cpu"), WindowSource(None, search)
    prepared = {}
    for processes in (0, 2):
        maps = MapFile(tmp_path / f"maps-{processes}.f16")
        prepared[processes], _ = prepare_images(rv, truth, four / "images", source, TrainingSettings(), maps,
                                                quiet=True, processes=processes)
        maps.close()
    assert len(prepared[2]) == len(prepared[0]) == len(IDS)
    for here, there in zip(prepared[0], prepared[2]):
        assert here.path == there.path and len(here.windows) > 10
        np.testing.assert_array_equal(here.windows, there.windows)
        np.testing.assert_array_equal(here.negative, there.negative)


def test_shards_merge_to_the_rows_of_a_single_run(four, model, single, tmp_path):
    from sppfeat.detection.inference import detect

    out = tmp_path / "d.csv"
    shards = [tmp_path / f"d.shard-0000{i}-of-00002.csv" for i in range(2)]
    for i in range(2):
        result = detect(model, four / "images", out, shard=(i, 2), cores=1, quiet=True)
        assert result.output == shards[i] and {d.path for d in result.detections} <= {f"{k}.jpg" for k in
                                                                                      IDS[2 * i:2 * i + 2]}
    assert not out.exists()
    r = run_sppfeat("merge", *shards, out)
    assert r.returncode == 0 and r.stderr == f"sppfeat: {out}: 2 detection shards joined\n", r.stderr
    assert out.read_text() == single.read_text()
    # a shard missing, or one of another run, is refused in one line
    r = run_sppfeat("merge", shards[0], tmp_path / "e.csv")
    assert r.returncode == 2 and "shard 1/2 missing" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    detect(model, four / "images", tmp_path / "other.csv", shard=(1, 2), threshold=0.0, cores=1, quiet=True)
    r = run_sppfeat("merge", shards[0], tmp_path / "other.shard-00001-of-00002.csv", tmp_path / "e.csv")
    assert r.returncode == 2 and "differ in threshold" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "e.csv").exists()


def test_torchrun_ranks_detect_shards_joined_into_a_single_run(four, model, single, tmp_path):
    out = tmp_path / "d.csv"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                        "sppfeat", "detect", str(model), str(four / "images"), "-o", str(out), "-q"],
                       capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "d.shard-00001-of-00002.csv").is_file()
    assert out.read_text() == single.read_text()


def test_an_interrupted_run_resumes_its_pictures(four, model, single, tmp_path, monkeypatch):
    from sppfeat.detection import inference
    from sppfeat.features.interrupts import ExtractionInterrupted

    inference.detect(model, four / "images", tmp_path / "whole.csv", draw=tmp_path / "whole", cores=1, quiet=True)
    real = interrupt_at_call(monkeypatch, inference, "detect_windows", 3, 2)
    out, drawn = tmp_path / "d.csv", tmp_path / "drawn"
    with pytest.raises(ExtractionInterrupted, match="after 2 of 4 images"):
        inference.detect(model, four / "images", out, draw=drawn, cores=1, quiet=True)
    monkeypatch.setattr(inference, "detect_windows", real)
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in drawn.glob("*.png")}
    assert sorted(first) == [f"{i}.png" for i in IDS[:2]]
    with pytest.raises(ValueError, match="resume=True"):  # a fresh run does not take the pictures over
        inference.detect(model, four / "images", out, draw=drawn, cores=1, quiet=True)
    with pytest.raises(ValueError, match="differs in draw"):
        inference.detect(model, four / "images", out, draw=tmp_path / "elsewhere", cores=1, quiet=True, resume=True)
    inference.detect(model, four / "images", out, draw=drawn, cores=1, quiet=True, resume=True)
    assert out.read_text() == single.read_text()
    assert sorted(p.name for p in drawn.glob("*.png")) == [f"{i}.png" for i in IDS]
    for name, stat in first.items():  # kept, not drawn again
        assert ((drawn / name).stat().st_ino, (drawn / name).stat().st_mtime_ns) == stat
    for i in IDS:  # and every picture is the uninterrupted run's
        assert np.array_equal(np.asarray(Image.open(drawn / f"{i}.png")),
                              np.asarray(Image.open(tmp_path / "whole" / f"{i}.png")))


def test_a_picture_shows_the_best_detections_at_or_above_its_threshold(tmp_path):
    from sppfeat.detection.drawing import MAX_DRAWN, draw_detections, draw_rule
    from sppfeat.detection.inference import Detection

    photo = tmp_path / "grey.png"
    Image.new("RGB", (360, 300), (128, 128, 128)).save(photo)
    cells = [(60 * (k % 6) + 20, 50 * (k // 6) + 20) for k in range(30)]  # one 20 px box per 60 × 50 cell
    scores = [1 - k / 32 for k in range(30)]  # exact in binary: no rounding at the threshold
    rows = [Detection("grey.png", x, y, x + 20, y + 20, "c", s) for (x, y), s in zip(cells, scores)]
    rows = [rows[k] for k in np.random.default_rng(0).permutation(30)]  # not in score order
    for threshold, caption in ((None, "score >= 0.5 (probability), 17 of 30 detections"),
                               (0.125, "score >= 0.125 (probability), 20 of 30 detections (the best 20 of 29)")):
        rule = draw_rule("probability", threshold)
        assert rule.caption(rows) == caption
        draw_detections(str(photo), rows, tmp_path / "out.png", rule)
        pixels = np.asarray(Image.open(tmp_path / "out.png"))
        outlined = {k for k, (x, y) in enumerate(cells) if tuple(pixels[y + 10, x]) != (128, 128, 128)}
        expected = sorted((k for k in range(30) if scores[k] >= rule.threshold), key=lambda k: -scores[k])
        assert outlined == set(expected[:MAX_DRAWN])
    assert draw_rule("margin").threshold == 0.0 and draw_rule("probability").threshold == 0.5
    with pytest.raises(ValueError, match="draw_threshold must be a finite number"):
        draw_rule("margin", float("nan"))


def test_the_small_messages(four, model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(VOC / "JPEGImages" / f"{IDS[0]}.jpg", images / f"{IDS[0]}.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (images / "empty.png").write_bytes(b"")
    r = run_sppfeat("proposals", images, tmp_path / "p.h5", "--search-side", 100, "--cores", 1)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    named = sorted(line.split(":")[1] for line in lines if line.startswith("sppfeat: skipped "))
    assert named == [" skipped broken.jpg", " skipped empty.png"] and lines[-1].endswith("; 2 skipped"), r.stderr
    r = run_sppfeat("predict", model, images)
    assert r.returncode == 2 and r.stderr == f"sppfeat: {model} is a detector model: use sppfeat detect\n"
    for args, message in ((["--shard", "0/2"], "--shard 0/2 needs an output file"),
                          (["--draw-threshold", "0.3"], "--draw-threshold 0.3 needs a draw folder")):
        r = run_sppfeat("detect", model, images, *args)
        assert r.returncode == 2 and r.stderr == f"sppfeat: {message}\n", r.stderr


def test_a_damaged_model_is_refused_in_one_line(model, four, tmp_path):
    import h5py

    from sppfeat.detection.model import load_detector, save_detector

    def damaged(name, change):
        path = tmp_path / f"{name}.h5"
        path.write_bytes(model.read_bytes())
        with h5py.File(path, "r+") as f:
            change(f)
        return path

    def fewer_names(f):
        names = f["class_names"][:-1]
        del f["class_names"]
        f["class_names"] = names

    def narrower(f):
        coef = f["coef"][:, :100]
        del f["coef"]
        f["coef"] = coef

    cases = [(damaged("no-coef", lambda f: f.__delitem__("coef")), "neither SVMs (coef) nor a head"),
             (damaged("names", fewer_names), "SVMs of shape (20, 6400) for 19 class names"),
             (damaged("nan", lambda f: f["coef"].__setitem__((3, 7), np.nan)), "coef is not finite"),
             (damaged("json", lambda f: f.attrs.__setitem__("training", f.attrs["training"][:30])),
              "damaged detector model (JSONDecodeError")]
    for path, message in cases:
        with pytest.raises(ValueError) as caught:
            load_detector(path)
        assert str(caught.value).startswith(f"{path} is a damaged detector model") and message in str(caught.value)
    wide = damaged("wide", narrower)
    r = run_sppfeat("detect", wide, four / "images", "--cores", 1)
    assert r.returncode == 2 and r.stderr == (f"sppfeat: {wide} is a damaged detector model: its SVMs take 100 "
                                              f"values, its feature settings give window vectors of 6400\n"), r.stderr
    broken = load_detector(model)
    broken.intercept[0] = np.inf
    with pytest.raises(ValueError, match="not writing .*intercept is not finite"):
        save_detector(tmp_path / "out.h5", broken)
    assert not (tmp_path / "out.h5").exists()


def test_windows_are_used_only_on_the_image_they_were_proposed_on(four, model, tmp_path):
    from sppfeat.detection.inference import detect
    from sppfeat.detection.proposals import proposals

    _, search = small_settings()
    made = proposals(four / "images", tmp_path / "p.h5", search, cores=1, quiet=True)
    assert made.n_images == 4
    with pytest.raises(ValueError, match="max_boxes 300, not 50"):  # a finished file of other settings
        proposals(four / "images", tmp_path / "p.h5", search.__class__(max_side=200, max_boxes=50), resume=True)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    os.symlink(VOC / "JPEGImages" / f"{IDS[1]}.jpg", swapped / f"{IDS[0]}.jpg")  # 480x364 under 500x333's name
    os.symlink(VOC / "JPEGImages" / f"{IDS[2]}.jpg", swapped / f"{IDS[2]}.jpg")
    result = detect(model, swapped, tmp_path / "d.csv", proposals=tmp_path / "p.h5", cores=1, quiet=True)
    assert result.skipped == [(f"{IDS[0]}.jpg", "its size 480x364 is not the 500x333 the proposal file's windows "
                                                "were found on (another image of that name)")]
    windows = tmp_path / "windows.csv"  # 000012.jpg is 500x333
    windows.write_text(f"path,x1,y1,x2,y2\n{IDS[0]}.jpg,10,10,200,200\n{IDS[0]}.jpg,nan,10,100,100\n"
                       f"{IDS[0]}.jpg,100,100,10,10\n{IDS[2]}.jpg,600,400,700,500\n")
    result = detect(model, four / "images", tmp_path / "w.csv", proposals=windows, cores=1, quiet=True)
    assert result.skipped == [("windows.csv", "line 3 (000012.jpg) x1 nan is not a finite number"),
                              ("windows.csv", "line 4 (000012.jpg) x1 100 > x2 10 (inverted)"),
                              (f"{IDS[1]}.jpg", "no proposals for this image in the proposal file"),
                              (f"{IDS[2]}.jpg", "none of its 1 window is inside the image"),
                              (f"{IDS[3]}.jpg", "no proposals for this image in the proposal file")], result.skipped
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(VOC / "JPEGImages" / f"{IDS[1]}.jpg", other / "renamed.jpg")
    with pytest.raises(ValueError, match="none of the images of .* is in the proposal file"):
        detect(model, other, tmp_path / "e.csv", proposals=tmp_path / "p.h5", cores=1, quiet=True)
    (other / "zero.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="strict=True: zero.jpg: empty file"):
        proposals(other, tmp_path / "q.h5", search, cores=1, strict=True, quiet=True)


def test_an_output_is_never_one_of_the_inputs(four, model, tmp_path):
    from sppfeat.detection.training import train_detector

    boxes = tmp_path / "boxes"
    boxes.mkdir()
    xml = boxes / f"{IDS[0]}.xml"
    xml.write_bytes((four / "boxes" / f"{IDS[0]}.xml").read_bytes())
    with pytest.raises(ValueError, match=f"{xml} is one of the inputs"):
        train_detector(four / "images", boxes, xml, overwrite=True, quiet=True)
    assert xml.read_bytes() == (four / "boxes" / f"{IDS[0]}.xml").read_bytes()
    windows = tmp_path / "windows.csv"
    windows.write_text(f"path,x1,y1,x2,y2\n{IDS[0]}.jpg,10,10,200,200\n")
    r = run_sppfeat("detect", model, four / "images", "--proposals", windows, "-o", windows, "--overwrite")
    assert r.returncode == 2 and r.stderr == f"sppfeat: {windows} is one of the inputs ({windows}): write it " \
                                             f"elsewhere\n", r.stderr
