"""The GPU path's logic on the CPU: bucketed shapes, bfloat16 autocast, batches of one shape
gathered and released in order (the path of --workers 0), and the mode recorded so that resume,
shards, torchrun and merge work with it and refuse to mix modes."""

import os
import shutil
import signal
import subprocess
import sys
from collections import deque

import numpy as np
import pytest
from PIL import Image

from conftest import (CALTECH, DEMO, FAST_ARGS, SUBPROCESS_TIMEOUT, assert_same_rows, cosine, fast_config, one_process,
                      run_sppfeat)
from sppfeat import ExtractionConfig, Runtime, describe, extract, merge
from sppfeat.data.decode import ResizePolicy
from sppfeat.features.descriptor import DecodedItem
from sppfeat.features.gather import ShapeGatherer, chunk_sizes, shape_key
from sppfeat.features.interrupts import ExtractionInterrupted
from sppfeat.shards import shard_path
from sppfeat.storage.feature_file import open_features
from sppfeat.storage.progress import SegmentBuffer

BUCKETED = fast_config(shapes="bucketed")  # scale 64, levels 2,1
EXACT = fast_config(shapes="exact")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """40 demo photos of 4 classes: their own sizes (most not multiples of 32 at scale 64), plus a
    broken file in the middle."""
    root = tmp_path_factory.mktemp("mixed") / "images"
    for folder in sorted(DEMO.iterdir())[:4]:
        shutil.copytree(folder, root / folder.name)
    (root / sorted(DEMO.iterdir())[1].name / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return root


@pytest.fixture(scope="module")
def bucketed_reference(mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("bref") / "bucketed.h5"
    extract(mixed, out, BUCKETED, one_process(checkpoint_every=8), quiet=True)
    return out


def test_images_that_already_fit_a_bucket_get_the_exact_vectors(tmp_path):
    # at scale 64 with stride 32, an image resized to 64×96, 64×160 or 96×64 fits a bucket as it is
    folder = tmp_path / "fit"
    sources = sorted(DEMO.rglob("*.jpg"))[:6]
    sizes = [(96, 64), (192, 128), (160, 64), (320, 128), (64, 96), (64, 64), (100, 70)]  # the last does not fit
    for k, (src, size) in enumerate(zip(sources + sources[:1], sizes)):
        (folder / "c").mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(folder / "c" / f"{k}.png")
    runs = {}
    for mode, config in (("exact", EXACT), ("bucketed", BUCKETED)):
        extract(folder, tmp_path / f"{mode}.h5", config, one_process(), quiet=True)
        runs[mode] = open_features(tmp_path / f"{mode}.h5").read_features()
    np.testing.assert_allclose(runs["bucketed"][:6], runs["exact"][:6], rtol=1e-4, atol=1e-4)
    assert cosine(runs["bucketed"][6:], runs["exact"][6:])[0] < 0.999  # 91 px wide exact, 96 bucketed


def test_a_snapped_size_moves_each_side_by_at_most_half_a_stride():
    policy = ResizePolicy(224, 2048, 32, "bicubic", stride=32)
    rng = np.random.default_rng(0)
    exact = ResizePolicy(224, 2048, 32, "bicubic")
    for h, w in rng.integers(40, 6000, size=(2000, 2)):
        (eh, ew, _), (sh, sw, _) = exact.target_size(h, w), policy.target_size(h, w)
        assert sh % 32 == 0 and sw % 32 == 0 and max(sh, sw) <= 2048
        if max(eh, ew) <= 2048 - 16:
            assert abs(sh - eh) <= 16 and abs(sw - ew) <= 16
    assert policy.target_size(300, 400) == (224, 288, False)  # 298.67 -> 288 (exact: 299)
    assert policy.target_size(10, 10_000)[:2] == (32, 2048)  # a panorama: capped, never cropped


def test_the_shapes_of_a_folder_of_random_sizes_are_bounded():
    """Shorter side at the scale, longer side one of max_side / stride values: at most
    2 · max_side / stride shapes for images within the cap (aspect up to max_side / scale)."""
    policy = ExtractionConfig(shapes="bucketed").resolved("folder", None, "cpu").resize_policies()[0]
    rng = np.random.default_rng(1)
    short = rng.integers(50, 4000, size=20_000)
    aspect = np.exp(rng.uniform(0, np.log(2048 / 224), size=20_000))
    sizes = [(s, int(s * a)) if k % 2 else (int(s * a), s) for k, (s, a) in enumerate(zip(short, aspect))]
    exact = ExtractionConfig(shapes="exact").resolved("folder", None, "cpu").resize_policies()[0]
    assert len({exact.target_size(h, w)[:2] for h, w in sizes}) > 1500
    assert len({policy.target_size(h, w)[:2] for h, w in sizes}) <= 2 * 2048 // 32


@pytest.mark.skipif(not CALTECH.is_dir(), reason="needs ../shared/data/caltech101")
def test_caltech_101_has_few_bucketed_shapes():
    sizes = set()
    for path in CALTECH.rglob("*.jpg"):
        with Image.open(path) as im:
            sizes.add((im.height, im.width))
    config = ExtractionConfig(scales=(224,)).resolved("caltech101", None, "cuda")
    shapes = {tuple(p.target_size(h, w)[:2] for p in config.resize_policies()) for h, w in sizes}
    exact = {tuple(p.target_size(h, w)[:2] for p in config.replace(shapes="exact").resize_policies())
             for h, w in sizes}
    assert len(sizes) > 2000 and len(exact) > 500 and len(shapes) <= 40 * len(config.scales)


def test_bfloat16_autocast_runs_on_the_cpu_and_stays_close_to_float32():
    photos = sorted(DEMO.rglob("*.jpg"))[::6]
    config = ExtractionConfig(scales=(224,), shapes="exact")
    full = describe(photos, config.replace(compute="float32"), device="cpu")
    half = describe(photos, config.replace(compute="bfloat16"), device="cpu")
    similarity = cosine(full, half)
    # measured on these 10 photos: 0.9963 to 0.9994, median 0.9987
    assert half.dtype == np.float32 and similarity.min() >= 0.99 and np.median(similarity) >= 0.998


def test_gathered_batches_have_one_shape_bounded_sizes_and_come_back_in_input_order():
    rng = np.random.default_rng(2)
    shapes = [(64, 96, 3), (96, 64, 3), (64, 64, 3), (64, 128, 3), (64, 160, 3)]
    items = []
    for index in range(1000):
        if index % 97 == 5:
            items.append(DecodedItem(index, None, (0, 0), False, "cannot decode"))
        else:
            shape = shapes[min(4, int(rng.exponential(0.8)))]  # skewed, as photo sizes are
            items.append(DecodedItem(index, [np.zeros(shape, np.uint8)], shape[:2], False, None))
    decoded = [items[a:a + 32] for a in range(0, len(items), 32)]
    gatherer = ShapeGatherer(batch_size=16, max_waiting=64)
    sent, pending = [], deque()

    def described_late(batches):  # two batches in flight, as with two model threads
        for batch in batches:
            sent.append(batch)
            pending.append(batch)
            if len(pending) > 2:
                yield pending.popleft()
        yield from pending

    released = [item.index for ready in gatherer.released(described_late(gatherer.batches(iter(decoded))))
                for item in ready]
    assert released == list(range(1000))
    assert sorted(item.index for batch in sent for item in batch) == list(range(1000))
    for batch in sent:
        assert len({shape_key(item) for item in batch}) == 1
        assert len(batch) in (1, 2, 4, 8, 16)
    full = sum(len(batch) == 16 for batch in sent if shape_key(batch[0]) is not None)
    assert full * 16 > 0.8 * 1000  # most images run in full batches


def test_chunk_sizes_are_full_batches_then_powers_of_two():
    assert chunk_sizes(13, 8) == [8, 4, 1] and chunk_sizes(40, 16) == [16, 16, 8] and chunk_sizes(3, 256) == [2, 1]


@pytest.mark.parametrize("runtime", [Runtime(device="cpu", workers=0, batch_size=64, cores=2),
                                     Runtime(device="cpu", workers=1, batch_size=7)], ids=["threads", "worker"])
def test_rows_stay_with_their_images_when_equal_shapes_are_batched(mixed, tmp_path, runtime):
    out = tmp_path / "b.h5"
    extract(mixed, out, BUCKETED, runtime, quiet=True)
    ff = open_features(out)
    alone = describe([str(mixed / p) for p in ff.paths], BUCKETED, device="cpu", batch_size=1)
    assert (cosine(ff.read_features(), alone) >= 0.9999).all()
    assert ff.record["shapes"] == "bucketed" and len(ff.skipped) == 1
    heights, widths = ff.image_sizes.T
    assert len(set(zip(heights, widths))) > 10  # real photos of many sizes


def test_an_interrupted_bucketed_run_resumes_to_the_same_file(mixed, bucketed_reference, tmp_path, monkeypatch):
    out = tmp_path / "r.h5"
    real_add, calls = SegmentBuffer.add, {"n": 0}

    def add_then_stop(self, item):
        real_add(self, item)
        calls["n"] += 1
        if calls["n"] == 20:
            raise ExtractionInterrupted(signal.SIGTERM)

    monkeypatch.setattr(SegmentBuffer, "add", add_then_stop)
    with pytest.raises(ExtractionInterrupted):
        extract(mixed, out, BUCKETED, one_process(checkpoint_every=8), quiet=True)
    monkeypatch.undo()
    refused = run_sppfeat("extract", mixed, out, *FAST_ARGS, "--workers", "1", "--exact", "--resume")
    assert refused.returncode == 2 and "--bucketed (now --exact)" in refused.stderr
    extract(mixed, out, BUCKETED, one_process(checkpoint_every=8), resume=True, quiet=True)
    assert_same_rows(out, bucketed_reference)


def test_bucketed_shards_merge_to_the_single_run_and_modes_do_not_mix(mixed, bucketed_reference, tmp_path):
    out = tmp_path / "s.h5"
    for i in range(2):
        extract(mixed, out, BUCKETED, one_process(), shard=(i, 2), quiet=True)
    merge([shard_path(out, i, 2) for i in range(2)], out)
    assert_same_rows(out, bucketed_reference)
    mixed_out = tmp_path / "m.h5"
    extract(mixed, mixed_out, EXACT, one_process(), shard=(1, 2), quiet=True)
    with pytest.raises(ValueError, match="shapes"):
        merge([shard_path(out, 0, 2), shard_path(mixed_out, 1, 2)], tmp_path / "never.h5")


def test_torchrun_ranks_extract_bucketed_shards_equal_to_a_single_run(mixed, bucketed_reference, tmp_path):
    out = tmp_path / "dist.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "sppfeat", "extract", str(mixed), str(out), *FAST_ARGS, "--workers", "1",
                           "--bucketed", "-q"], capture_output=True, text=True, timeout=2 * SUBPROCESS_TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_rows(out, bucketed_reference)


def test_the_command_line_records_the_mode_and_info_shows_it(mixed, bucketed_reference, tmp_path):
    out = tmp_path / "cli.h5"
    done = run_sppfeat("extract", mixed, out, *FAST_ARGS, "--workers", "1", "--bucketed", "--compute", "float32")
    assert done.returncode == 0, done.stderr
    assert "images/s after" in done.stderr  # steady rate and start-up are reported apart
    assert_same_rows(out, bucketed_reference)
    shown = run_sppfeat("info", out)
    settings = dict(line.split(None, 1) for line in shown.stdout.splitlines() if line.startswith("    "))
    assert settings["shapes"] == "bucketed" and settings["compute"] == "float32"
