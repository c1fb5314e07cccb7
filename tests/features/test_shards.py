"""Sharded extraction: --shard i/n in separate processes, torchrun ranks, merged virtual files."""

import os
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DEMO, FAST_ARGS, SUBPROCESS_TIMEOUT, assert_same_rows, fast_config, one_process, sppfeat_command
import sppfeat
from sppfeat import evaluate, extract, merge, train_svm
from sppfeat.cli import main
from sppfeat.shards import shard_bounds, shard_path
from sppfeat.storage.feature_file import open_features

FAST = [*FAST_ARGS, "--workers", "1", "-q"]
PACKAGE = Path(sppfeat.__file__).resolve().parent


def frames_in_package(text: str) -> list[str]:
    """The traceback frames (`File "...", line N`, torchrun prefixes them with `[rank1]: `) in text whose file
    is inside the sppfeat package folder (not merely under a folder named sppfeat, as a checkout's .venv is)."""
    files = re.findall(r'File "([^"]+)", line \d+', text)
    return [f for f in files if Path(f).resolve().is_relative_to(PACKAGE)]


def extract_fast(images, out, **options):
    return extract(images, out, fast_config(), one_process(), quiet=True, **options)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The 60 demo photos plus bad files in the middle and at the end of the sorted list."""
    root = tmp_path_factory.mktemp("shards") / "images"
    shutil.copytree(DEMO, root)
    (root / "grand_piano" / "zero.jpg").write_bytes(b"")
    (root / "starfish" / "zz_noise.jpg").write_bytes(os.urandom(2000))
    return root


@pytest.fixture(scope="module")
def single(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "single.h5"
    extract_fast(images, out)
    return out


def test_frames_in_package_finds_our_frames_only():
    with pytest.raises(ValueError) as raised:
        sppfeat.shards.check_shard((2, 1))
    ours = "".join(traceback.format_exception(raised.value))
    assert len(frames_in_package(ours)) == 1
    assert len(frames_in_package("".join(f"[rank1]: {line}\n" for line in ours.splitlines()))) == 1
    venv = f'  File "{PACKAGE.parent / ".venv" / "lib" / "torch" / "run.py"}", line 1, in <module>\n'
    assert frames_in_package(venv) == []  # a checkout named sppfeat holding its .venv


def test_shard_bounds_cover_the_list_once_without_padding():
    for n_images in (0, 1, 5, 61, 1000):
        for count in (1, 2, 3, 7, 8):
            ranges = [shard_bounds(n_images, i, count) for i in range(count)]
            covered = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
            assert covered.tolist() == list(range(n_images))
            sizes = [hi - lo for lo, hi in ranges]
            assert max(sizes) - min(sizes) <= 1


def test_three_shard_processes_then_merge_equals_a_single_run(images, single, tmp_path):
    out = tmp_path / "all.h5"
    procs = [subprocess.Popen(sppfeat_command("extract", images, out, "--shard", f"{i}/3", *FAST),
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        assert proc.returncode == 0, err
    shards = [shard_path(out, i, 3) for i in range(3)]
    assert all(s.is_file() for s in shards)
    runner = CliRunner()
    result = runner.invoke(main, ["merge", *map(str, shards), str(out)])
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f["features"].is_virtual and f["paths"].is_virtual
    assert_same_rows(out, single)
    consolidated = tmp_path / "one.h5"
    assert runner.invoke(main, ["merge", "--consolidate", *map(str, reversed(shards)), str(consolidated)]).exit_code == 0
    with h5py.File(consolidated, "r") as f:
        assert not f["features"].is_virtual
    assert_same_rows(consolidated, single)

    # The merged file travels with its shards (relative links), and train-svm / eval read it.
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in [out, *shards]:
        shutil.move(path, moved / path.name)
    model = tmp_path / "model.h5"
    train_svm(moved / out.name, model, C=1.0, protocol="stratified")
    assert evaluate(model, moved / out.name).accuracy > 0.8
    os.remove(moved / shards[1].name)
    lost = runner.invoke(main, ["info", str(moved / out.name)])
    assert lost.exit_code == 2 and "shard" in lost.output and "missing" in lost.output


def test_merge_refuses_incomplete_or_foreign_shard_sets(images, tmp_path):
    out = tmp_path / "x.h5"
    for i in range(2):
        extract_fast(images, out, shard=(i, 2))
    other = tmp_path / "other.h5"
    extract(images, other, fast_config(levels=(1,)), one_process(), shard=(1, 2), quiet=True)
    runner = CliRunner()
    cases = [([shard_path(out, 0, 2)], "1/2 missing"),
             ([shard_path(out, 0, 2), shard_path(out, 0, 2)], "given twice"),
             ([shard_path(out, 0, 2), shard_path(other, 1, 2)], "other settings")]
    for shards, message in cases:
        result = runner.invoke(main, ["merge", *map(str, shards), str(tmp_path / "m.h5")])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.h5").exists()


def test_resume_works_per_shard(images, single, tmp_path):
    out = tmp_path / "r.h5"
    extract_fast(images, out, shard=(0, 2))
    extract(images, out, fast_config(), one_process(checkpoint_every=4), shard=(1, 2), quiet=True)
    again = extract_fast(images, out, shard=(1, 2), resume=True)
    assert again.seconds == 0.0 and again.path == shard_path(out, 1, 2)  # already complete: nothing redone
    merge([shard_path(out, i, 2) for i in range(2)], out)
    assert_same_rows(out, single)
    foreign = tmp_path / "foreign.h5"
    shutil.copy(shard_path(out, 0, 2), shard_path(foreign, 1, 2))  # shard 0's rows where shard 1's should be
    with pytest.raises(ValueError, match="shard"):
        extract_fast(images, foreign, shard=(1, 2), resume=True)


def torchrun(images, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "sppfeat", "extract", str(images), str(out), *FAST, *extra],
                          capture_output=True, text=True, timeout=2 * SUBPROCESS_TIMEOUT, env=env)


def test_torchrun_two_ranks_on_cpu_equals_a_single_run(images, single, tmp_path):
    out = tmp_path / "dist.h5"
    run = torchrun(images, out)
    assert run.returncode == 0, run.stderr[-3000:]
    assert all(shard_path(out, i, 2).is_file() for i in range(2))
    assert_same_rows(out, single)
    ff = open_features(out)
    assert ff.attributes["shard_count"] == 1 and ff.record["shards"] == 2


def test_a_failed_rank_is_named_and_the_other_shard_kept(images, single, tmp_path):
    out = tmp_path / "fail.h5"
    shard_path(out, 1, 2).write_text("in the way")  # rank 1 cannot write its shard
    run = torchrun(images, out)
    assert run.returncode != 0 and not out.exists()
    ours = [line for line in run.stderr.splitlines() if line.startswith("sppfeat: shard")]
    assert len(ours) == 1 and "shard 1/2 failed" in ours[0] and "--resume" in ours[0]
    # No traceback through our code; torchrun prints its own traceback and summary, whatever the folder names.
    assert frames_in_package(run.stderr) == [], run.stderr[-3000:]
    assert open_features(shard_path(out, 0, 2)).attributes["shard_index"] == 0
    shard_path(out, 1, 2).unlink()
    extract_fast(images, out, shard=(1, 2))
    merge([shard_path(out, i, 2) for i in range(2)], out)
    assert_same_rows(out, single)


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    """Two demo photos, a file refused while listing (empty) and a truncated JPEG, in one class folder."""
    root = tmp_path_factory.mktemp("few") / "images"
    (root / "pizza").mkdir(parents=True)
    photos = sorted((DEMO / "starfish").glob("*.jpg"))[:2]
    for photo in photos:
        shutil.copy(photo, root / "pizza" / photo.name)
    (root / "pizza" / "empty.jpg").write_bytes(b"")
    (root / "pizza" / "zz_truncated.jpg").write_bytes(photos[0].read_bytes()[:3000])
    return root


def test_shards_without_images_are_empty_files_and_merge_equals_a_single_run(few, tmp_path):
    single = tmp_path / "single.h5"
    extract_fast(few, single)
    out = tmp_path / "p.h5"
    results = [extract_fast(few, out, shard=(i, 5)) for i in range(5)]  # 3 listed images, 5 shards
    assert [r.n_images for r in results] == [0, 1, 0, 1, 0]
    assert not list(tmp_path.glob("*.parts"))
    empty = open_features(shard_path(out, 0, 5))  # no image in its range; the file refused while listing
    assert empty.paths == [] and empty.read_features().shape == (0, empty.dim) and len(empty.skipped) == 1
    assert empty.config == open_features(shard_path(out, 1, 5)).config
    failed = open_features(shard_path(out, 4, 5))  # its one image cannot be decoded
    assert failed.paths == [] and failed.skip_reasons == {"cannot decode": 1}
    assert extract_fast(few, out, shard=(2, 5), resume=True).seconds == 0.0  # complete: nothing redone
    result = CliRunner().invoke(main, ["merge", *(str(shard_path(out, i, 5)) for i in range(5)), str(out)])
    assert result.exit_code == 0, result.output
    assert_same_rows(out, single)
    merge([shard_path(out, i, 5) for i in range(5)], tmp_path / "one.h5", consolidate=True)
    assert_same_rows(tmp_path / "one.h5", single)


def test_torchrun_with_more_ranks_than_images(few, tmp_path):
    one = tmp_path / "one"
    (one / "pizza").mkdir(parents=True)
    shutil.copy(next((few / "pizza").glob("image_*.jpg")), one / "pizza")
    extract_fast(one, tmp_path / "single.h5")
    run = torchrun(one, tmp_path / "dist.h5")
    assert run.returncode == 0, run.stderr[-3000:]
    assert open_features(shard_path(tmp_path / "dist.h5", 0, 2)).paths == []  # rank 0 has no image
    assert_same_rows(tmp_path / "dist.h5", tmp_path / "single.h5")


@pytest.fixture(scope="module")
def all_bad(few, tmp_path_factory):
    """The bad files of `few` only: an empty file (refused while listing) and a truncated JPEG."""
    root = tmp_path_factory.mktemp("bad") / "images"
    (root / "pizza").mkdir(parents=True)
    for name in ("empty.jpg", "zz_truncated.jpg"):
        shutil.copy(few / "pizza" / name, root / "pizza" / name)
    return root


def test_merging_shards_without_any_row_is_refused_as_a_single_run_is(all_bad, tmp_path):
    out = tmp_path / "bad.h5"
    for i in range(2):
        extract_fast(all_bad, out, shard=(i, 2))
    with pytest.raises(ValueError, match=r"could be decoded \(1 cannot decode, 1 empty file\)$"):
        merge([shard_path(out, i, 2) for i in range(2)], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_a_run_where_every_image_fails_says_why_in_words_and_a_rerun_says_the_same(all_bad, tmp_path):
    out = tmp_path / "ab.h5"
    for _ in range(2):
        result = CliRunner().invoke(main, ["extract", str(all_bad), str(out), *FAST])
        assert result.exit_code == 2 and result.output.strip().splitlines() == [
            f"sppfeat: no image of {all_bad} could be decoded (1 cannot decode, 1 empty file)"], result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_merged_file_refuses_a_shard_extracted_again_after_the_merge(few, tmp_path):
    out, merged = tmp_path / "o.h5", tmp_path / "m.h5"
    for i in range(2):
        extract_fast(few, out, shard=(i, 2))
    merge([shard_path(out, i, 2) for i in range(2)], merged)
    assert len(open_features(merged).paths) == 2
    extract(few, out, fast_config(scales=(96,)), one_process(), shard=(1, 2), overwrite=True, quiet=True)
    result = CliRunner().invoke(main, ["info", str(merged)])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"sppfeat: {merged} is a merged file whose shard {shard_path(out, 1, 2).name} changed since the merge "
        "(1 changed); merge the shards again"], result.output
