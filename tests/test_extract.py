"""extract end to end on real photos: schema, ordering, batching, bad files, CLI errors."""

import importlib
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import DEMO
from sppfeat import extract
from sppfeat.backbones import load_backbone
from sppfeat.cli import main
from sppfeat.decode import ResizePolicy, decode_image
from sppfeat.store import open_features


def cosine(a, b):
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_schema_round_trip(demo_features):
    ff = open_features(demo_features)
    expected_paths = sorted(p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*.jpg"))
    assert ff.paths == expected_paths
    assert ff.class_names == sorted(p.name for p in DEMO.iterdir() if p.is_dir())
    assert ff.labels.tolist() == [ff.class_names.index(p.split("/")[0]) for p in ff.paths]
    assert ff.dim == 1280 * 50 and ff.dtype == "float32" and ff.targets is None and ff.skipped == []
    with h5py.File(demo_features, "r") as f:
        assert f["features"].shape == (60, 64000) and f["features"].chunks[1] == 64000
        assert f["features"].maxshape == (None, 64000)
        assert f.attrs["complete"] and f.attrs["n_images"] == 60
        config = json.loads(f.attrs["config"])
        features = f["features"][()]
    for key in ("backbone", "weights_sha256", "levels", "pool", "scale", "max_side", "normalization",
                "feature_dim", "sppfeat_version", "torch_version", "created"):
        assert key in config
    assert config["levels"] == [6, 3, 2, 1] and config["feature_dim"] == 64000
    assert len(config["weights_sha256"]) == 64
    from PIL import Image

    for row in (0, 33):
        with Image.open(DEMO / ff.paths[row]) as im:
            assert ff.image_sizes[row].tolist() == [im.height, im.width]
    assert np.isfinite(features).all() and (features >= 0).all()  # ReLU6 maps, max pooled


def test_vectors_equal_a_hand_written_single_image_pipeline(demo_features):
    """Row k equals: decode -> normalise -> unfused network -> brute-force-layout SPP, one image."""
    ff = open_features(demo_features)
    net = load_backbone("efficientnet_lite0").net
    rows = [0, 17, 59]
    expected = []
    for row in rows:
        pixels = decode_image(str(DEMO / ff.paths[row]), ResizePolicy(224, 2048)).pixels
        x = (torch.from_numpy(pixels).permute(2, 0, 1)[None].float() - 127) / 128
        with torch.no_grad():
            fmap = net.forward_features(x)[0]
        assert fmap.shape[1:] == (-(-pixels.shape[0] // 32), -(-pixels.shape[1] // 32))
        levels = []
        for n in (6, 3, 2, 1):
            levels.append(torch.nn.functional.adaptive_max_pool2d(fmap, n).flatten())
        expected.append(torch.cat(levels).numpy())
    assert (cosine(ff.read_features(np.array(rows)), np.stack(expected)) >= 0.9999).all()


def test_batched_run_equals_one_image_at_a_time(tmp_path, demo_features):
    """Same shapes are stacked in a batch: vectors must not depend on the neighbours."""
    from PIL import Image

    from sppfeat.extract import ImageFiles, group_by_shape
    from sppfeat.discover import list_images

    folder = tmp_path / "same"
    folder.mkdir()
    for k, path in enumerate(sorted(DEMO.rglob("*.jpg"))[::7]):  # 9 photos, two shapes
        with Image.open(path) as im:
            im.convert("RGB").resize((160, 120) if k % 3 else (120, 150)).save(folder / f"{k}.png")
    single = tmp_path / "single.h5"
    batched = tmp_path / "batched.h5"
    extract(folder, single, batch_size=1, workers=0, quiet=True, scale=0)
    extract(folder, batched, batch_size=9, workers=2, quiet=True, scale=0)
    a, b = open_features(single), open_features(batched)
    assert a.paths == b.paths == sorted(a.paths, key=lambda p: p.encode())
    va, vb = a.read_features(), b.read_features()
    assert (cosine(va, vb) >= 0.9999).all()
    assert (cosine(va[:-1], va[1:]) < 0.99).all()  # rows really differ, so a swap would show
    listing = list_images(folder)
    dataset = ImageFiles(listing, [ResizePolicy(scale=0)], np.arange(len(listing.paths)))
    groups = group_by_shape([dataset[i] for i in range(len(dataset))])
    assert sorted(len(g) for g in groups.values()) == [3, 6]  # the batched run did stack images


def test_recycled_cpu_workers_give_the_rows_of_one_process(tmp_path, monkeypatch):
    """On the CPU, worker processes decode and describe, and are replaced every RECYCLE_EVERY
    images; the file must be the one a single in-process run writes, row for row."""
    extract_module = importlib.import_module("sppfeat.extract")  # the package's `extract` is the function

    folder = tmp_path / "few"
    for path in sorted(DEMO.rglob("*.jpg"))[::4]:  # 15 photos, several classes
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.parent.name / path.name)
    truncated = next((folder / "starfish").glob("*.jpg")).read_bytes()[:300]
    (folder / "starfish" / "truncated.jpg").write_bytes(truncated)  # listed, fails in a worker
    loaders = []

    class CountedLoader(extract_module.DataLoader):
        def __init__(self, dataset, **options):
            loaders.append(len(dataset))
            super().__init__(dataset, **options)

    options = dict(scale=96, levels="2,1", quiet=True, device="cpu", batch_size=3)
    extract(folder, tmp_path / "one.h5", workers=0, **options)
    monkeypatch.setattr(extract_module, "RECYCLE_EVERY", 4)
    monkeypatch.setattr(extract_module, "DataLoader", CountedLoader)
    extract(folder, tmp_path / "recycled.h5", workers=2, **options)
    assert loaders == [4, 4, 4, 4]  # 16 files: four generations of workers
    a, b = open_features(tmp_path / "one.h5"), open_features(tmp_path / "recycled.h5")
    assert a.paths == b.paths and len(a.paths) == 15
    assert a.skipped == b.skipped and len(b.skipped) == 1
    assert (a.image_sizes == b.image_sizes).all()
    assert (cosine(a.read_features(), b.read_features()) >= 0.9999).all()


def test_multi_scale_vector_is_the_binwise_max_of_the_single_scales(tmp_path):
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "starfish", folder)
    runs = {}
    for scale in ("64", "96", "64,96"):
        out = tmp_path / f"s{scale.replace(',', '_')}.h5"
        extract(folder, out, scale=scale, levels="2,1", quiet=True, workers=1)
        runs[scale] = open_features(out).read_features()
    np.testing.assert_allclose(runs["64,96"], np.maximum(runs["64"], runs["96"]), rtol=1e-5, atol=1e-6)
    assert open_features(tmp_path / "s64_96.h5").config["scale"] == [64, 96]
    with pytest.raises(ValueError, match="distinct"):
        extract(folder, tmp_path / "bad.h5", scale="64,64", quiet=True)


def test_bad_files_are_skipped_with_reasons_and_strict_fails(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(DEMO.rglob("*.jpg"))[:2]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "trunc.jpg").write_bytes(good[0].read_bytes()[:300])
    (folder / "readme.txt").write_text("hello")
    result = extract(folder, tmp_path / "out.h5", quiet=True, workers=1)
    assert result.n_images == 2 and result.n_skipped == 3
    ff = open_features(tmp_path / "out.h5")
    reasons = dict(ff.skipped)
    assert set(reasons) == {"zero.jpg", "trunc.jpg", "readme.txt"}
    assert reasons["trunc.jpg"].startswith("cannot decode")
    with pytest.raises(ValueError, match="--strict"):
        extract(folder, tmp_path / "strict.h5", quiet=True, strict=True, workers=0)
    assert not (tmp_path / "strict.h5").exists() and not (tmp_path / "strict.h5.partial").exists()


def test_float16_levels_and_avg_pool(tmp_path):
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "pizza", folder)
    extract(folder, tmp_path / "o.h5", dtype="float16", levels="3,1", pool="avg", quiet=True, workers=0, scale=64)
    ff = open_features(tmp_path / "o.h5")
    assert ff.dtype == "float16" and ff.dim == 1280 * 10 and ff.config["pool"] == "avg"
    assert ff.labels.tolist() == [-1] * 10


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_end_to_end_and_info(tmp_path):
    folder = tmp_path / "two"
    for cls in ("pizza", "starfish"):
        shutil.copytree(DEMO / cls, folder / cls)
    out = tmp_path / "f.h5"
    result = run_cli("extract", folder, out, "--scale", "128", "--levels", "2,1", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    info = run_cli("info", out)
    assert info.exit_code == 0 and "20 × 6400" in info.output and "efficientnet_lite0" in info.output
    again = run_cli("extract", folder, out, "--quiet")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert run_cli("extract", folder, out, "--quiet", "--overwrite", "--scale", "64").exit_code == 0


def test_cli_errors_are_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    for args in (["extract", tmp_path / "missing", tmp_path / "o.h5"],
                 ["extract", tmp_path / "empty", tmp_path / "o.h5"],
                 ["extract", DEMO, tmp_path / "o.h5", "--levels", "3,x"],
                 ["extract", DEMO, tmp_path / "o.h5", "--device", "cuda:7"],
                 ["info", tmp_path / "nothing.h5"]):
        proc = subprocess.run([sys.executable, "-m", "sppfeat", *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr


def test_backbones_command_lists_offline_weights():
    result = run_cli("backbones")
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("efficientnet_lite0"))
    assert "1280" in line and "(x - 127) / 128" in line and line.rstrip().endswith("yes")
    assert "resnet50" in result.output and "vgg16" in result.output


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no quota
    ({"cpu.max": "250000 100000\n"}, 2.5),  # docker --cpus 2.5
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1, no quota
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),
    ({}, None),  # no cgroup file system
])
def test_cgroup_cpu_quota_is_read_from_v1_and_v2_files(tmp_path, files, expected):
    from sppfeat.extract import cgroup_cpu_limit

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == expected


def test_available_cores_respects_affinity_and_a_container_quota(monkeypatch):
    """Workers are sized from the cores this process may use, not every core of the host."""
    extract_module = importlib.import_module("sppfeat.extract")
    allowed = len(os.sched_getaffinity(0))
    monkeypatch.setattr(extract_module, "cgroup_cpu_limit", lambda: None)
    assert extract_module.available_cores() == allowed
    monkeypatch.setattr(extract_module, "cgroup_cpu_limit", lambda: 0.5)
    assert extract_module.available_cores() == 1
    monkeypatch.setattr(extract_module, "cgroup_cpu_limit", lambda: 1000.0)
    assert extract_module.available_cores() == allowed
