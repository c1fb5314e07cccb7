"""extract end to end on real photos: schema, ordering, batching, workers, bad files."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from conftest import DEMO, cosine, fast_config, one_process
from sppfeat import ExtractionConfig, Runtime, extract
from sppfeat.backbones import load_backbone
from sppfeat.data.decode import ResizePolicy, decode_image, decode_scales
from sppfeat.features import runtime as runtime_module
from sppfeat.features.descriptor import SPPDescriptor, build_descriptor
from sppfeat.storage.feature_file import open_features


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
        assert f.attrs["complete"] and f.attrs["n_images"] == 60 and f.attrs["format_version"] == 2
        record = json.loads(f.attrs["config"])
        features = f["features"][()]
    for key in ("backbone", "weights_sha256", "levels", "pool", "scale", "max_side", "normalization",
                "feature_dim", "sppfeat_version", "torch_version", "created", "format_version"):
        assert key in record
    assert record["levels"] == [6, 3, 2, 1] and record["feature_dim"] == 64000 and record["dataset"] == "folder"
    assert len(record["weights_sha256"]) == 64
    assert ff.config == ExtractionConfig(weights_sha256=record["weights_sha256"]).resolved("folder", None, "cpu")
    assert (record["scale"], record["shapes"], record["compute"], record["dataset_settings"]) == (224, "exact", "float32", "")
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


def test_batched_run_equals_one_image_at_a_time(tmp_path, monkeypatch):
    """Same shapes are stacked in one forward pass (observed during the run): vectors must not
    depend on their neighbours."""
    from PIL import Image

    folder = tmp_path / "same"
    folder.mkdir()
    for k, path in enumerate(sorted(DEMO.rglob("*.jpg"))[::7]):  # 9 photos, two shapes
        with Image.open(path) as im:
            im.convert("RGB").resize((160, 120) if k % 3 else (120, 150)).save(folder / f"{k}.png")
    forward = SPPDescriptor.forward
    batch_shapes = []

    def counted_forward(self, images):
        batch_shapes.append(tuple(images.shape))
        return forward(self, images)

    monkeypatch.setattr(SPPDescriptor, "forward", counted_forward)
    native = ExtractionConfig(scales=(0,))
    extract(folder, tmp_path / "single.h5", native, Runtime(batch_size=1, workers=0), quiet=True)
    assert sorted(batch_shapes) == [(1, 120, 160, 3)] * 6 + [(1, 150, 120, 3)] * 3
    batch_shapes.clear()
    extract(folder, tmp_path / "batched.h5", native, Runtime(batch_size=3, workers=0), quiet=True)
    assert sorted(batch_shapes) == [(3, 120, 160, 3)] * 2 + [(3, 150, 120, 3)]  # images wait by shape: full batches
    a, b = open_features(tmp_path / "single.h5"), open_features(tmp_path / "batched.h5")
    assert a.paths == b.paths == sorted(a.paths, key=lambda p: p.encode())
    va, vb = a.read_features(), b.read_features()
    assert (cosine(va, vb) >= 0.9999).all()
    assert (cosine(va[:-1], va[1:]) < 0.99).all()  # rows really differ, so a swap would show


def test_recycled_cpu_workers_give_the_rows_of_one_process(tmp_path, monkeypatch):
    """On the CPU, worker processes decode and describe, and are replaced every RECYCLE_EVERY
    images; the file must be the one a single in-process run writes, row for row."""
    folder = tmp_path / "few"
    for path in sorted(DEMO.rglob("*.jpg"))[::4]:  # 15 photos, several classes
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.parent.name / path.name)
    truncated = next((folder / "starfish").glob("*.jpg")).read_bytes()[:300]
    (folder / "starfish" / "truncated.jpg").write_bytes(truncated)  # listed, fails in a worker
    loaders = []

    class CountedLoader(runtime_module.DataLoader):
        def __init__(self, dataset, **options):
            loaders.append(len(dataset))
            super().__init__(dataset, **options)

    config = ExtractionConfig(scales=(96,), levels=(2, 1))
    extract(folder, tmp_path / "one.h5", config, Runtime(device="cpu", batch_size=3, workers=0), quiet=True)
    monkeypatch.setattr(runtime_module, "RECYCLE_EVERY", 4)
    monkeypatch.setattr(runtime_module, "DataLoader", CountedLoader)
    extract(folder, tmp_path / "recycled.h5", config, Runtime(device="cpu", batch_size=3, workers=2), quiet=True)
    assert loaders == [4, 4, 4, 4]  # 16 files: four generations of workers
    a, b = open_features(tmp_path / "one.h5"), open_features(tmp_path / "recycled.h5")
    assert a.paths == b.paths and len(a.paths) == 15
    assert a.skipped == b.skipped and len(b.skipped) == 1
    assert (a.image_sizes == b.image_sizes).all()
    assert (cosine(a.read_features(), b.read_features()) >= 0.9999).all()


def test_multi_scale_vector_is_the_binwise_max_of_the_scales_of_one_decoding(tmp_path):
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "starfish", folder)
    runs = {}
    for scales in ((64,), (96,), (64, 96)):
        out = tmp_path / f"s{'_'.join(map(str, scales))}.h5"
        extract(folder, out, ExtractionConfig(scales=scales, levels=(2, 1)), one_process(), quiet=True)
        runs[scales] = open_features(out).read_features()
    # each file is decoded once, at the largest scale, and resized for the others
    config = ExtractionConfig(scales=(64, 96), levels=(2, 1)).resolved("folder", None, "cpu")
    model, _, _ = build_descriptor(config, torch.device("cpu"))
    paths = open_features(tmp_path / "s64_96.h5").paths
    with torch.inference_mode():
        expected = [np.maximum(*[model(torch.from_numpy(image.pixels)[None])[0].numpy()
                                 for image in decode_scales(str(folder / path), config.resize_policies())])
                    for path in paths]
    np.testing.assert_allclose(runs[(64, 96)], np.stack(expected), rtol=1e-4, atol=1e-4)  # batching: last bits
    # against decoding once per scale (the separate runs): the largest scale is decoded the same way
    assert (cosine(runs[(64, 96)], np.maximum(runs[(64,)], runs[(96,)])) >= 0.999).all()
    recorded = open_features(tmp_path / "s64_96.h5")
    assert recorded.record["scale"] == [64, 96] and recorded.config.scales == (64, 96)


def test_bad_files_are_skipped_with_reasons_and_strict_fails(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(DEMO.rglob("*.jpg"))[:2]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "trunc.jpg").write_bytes(good[0].read_bytes()[:300])
    (folder / "readme.txt").write_text("hello")
    result = extract(folder, tmp_path / "out.h5", runtime=one_process(), quiet=True)
    assert result.n_images == 2 and result.n_skipped == 3
    ff = open_features(tmp_path / "out.h5")
    reasons = dict(ff.skipped)
    assert set(reasons) == {"zero.jpg", "trunc.jpg", "readme.txt"}
    assert reasons["trunc.jpg"].startswith("cannot decode")
    with pytest.raises(ValueError, match="strict=True: "):
        extract(folder, tmp_path / "strict.h5", runtime=Runtime(workers=0), quiet=True, strict=True)
    assert not (tmp_path / "strict.h5").exists() and not (tmp_path / "strict.h5.partial").exists()


def test_float16_levels_and_avg_pool(tmp_path):
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "pizza", folder)
    config = ExtractionConfig(dtype="float16", levels=(3, 1), pool="avg", scales=(64,))
    extract(folder, tmp_path / "o.h5", config, Runtime(workers=0), quiet=True)
    ff = open_features(tmp_path / "o.h5")
    assert ff.dtype == "float16" and ff.dim == 1280 * 10 and ff.config.pool == "avg"
    assert ff.labels.tolist() == [-1] * 10


def test_shard_files_are_named_by_the_api(tmp_path):
    """extract(shard=(i, n)) writes the shard file the CLI's --shard i/n writes, next to OUT."""
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "pizza", folder)
    result = extract(folder, tmp_path / "out.h5", fast_config(), one_process(), shard=(1, 3), quiet=True)
    assert result.path == tmp_path / "out.shard-00001-of-00003.h5" and result.path.is_file()
    assert not (tmp_path / "out.h5").exists()
    with pytest.raises(ValueError, match="0 <= i < n"):
        extract(folder, tmp_path / "out.h5", fast_config(), shard=(3, 3), quiet=True)


def test_no_more_worker_processes_than_images(tmp_path, monkeypatch):
    """--workers 1000 on 3 images starts 3 processes, not 1000 (each would load the network)."""
    folder = tmp_path / "three"
    folder.mkdir()
    for path in sorted((DEMO / "starfish").glob("*.jpg"))[:3]:
        shutil.copy(path, folder / path.name)
    started = []

    class CountedLoader(runtime_module.DataLoader):
        def __init__(self, dataset, **options):
            started.append(options["num_workers"])
            super().__init__(dataset, **options)

    monkeypatch.setattr(runtime_module, "DataLoader", CountedLoader)
    config = ExtractionConfig(scales=(64,), levels=(1,))
    result = extract(folder, tmp_path / "o.h5", config, Runtime(device="cpu", batch_size=1, workers=1000), quiet=True)
    assert started == [3] and result.n_images == 3
