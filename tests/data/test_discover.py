import os
import shutil

import numpy as np
import pytest

from conftest import CALTECH, DEMO, VOC_SAMPLE
from sppfeat.data.discover import VOC_CLASSES, detect_dataset, list_images

JPEG = sorted((DEMO / "pizza").glob("*.jpg"))[0]


def test_sorted_walk_labels_content_sniffing_and_skips(tmp_path):
    for cls in ("b_cls", "a_cls"):
        (tmp_path / cls).mkdir()
    shutil.copy(JPEG, tmp_path / "b_cls" / "z.jpg")
    shutil.copy(JPEG, tmp_path / "b_cls" / "tmp")  # a JPEG without extension
    shutil.copy(JPEG, tmp_path / "a_cls" / "sub_dir_img.JPEG")
    (tmp_path / "a_cls" / "deep").mkdir()
    shutil.copy(JPEG, tmp_path / "a_cls" / "deep" / "x.jpg")
    (tmp_path / "a_cls" / "notes.txt").write_text("not an image")
    (tmp_path / "a_cls" / "empty.jpg").write_bytes(b"")
    (tmp_path / "a_cls" / ".DS_Store").write_bytes(b"junk")
    os.symlink(tmp_path / "a_cls", tmp_path / "a_cls" / "deep" / "loop")
    found = list_images(tmp_path)
    assert found.dataset == "folder"
    assert found.paths == ["a_cls/deep/x.jpg", "a_cls/sub_dir_img.JPEG", "b_cls/tmp", "b_cls/z.jpg"]
    assert found.class_names == ["a_cls", "b_cls"]
    assert found.labels == [0, 0, 1, 1]
    reasons = dict(found.skipped)
    assert reasons["a_cls/empty.jpg"].startswith("empty file")
    assert reasons["a_cls/notes.txt"].startswith("not an image")
    assert "symlink loop" in reasons["a_cls/deep/loop"]


def test_flat_folder_is_unlabeled(tmp_path):
    shutil.copy(JPEG, tmp_path / "one.jpg")
    found = list_images(tmp_path)
    assert found.labels == [-1] and found.class_names == []


def test_unreadable_file_is_skipped(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files without permission")
    shutil.copy(JPEG, tmp_path / "locked.jpg")
    os.chmod(tmp_path / "locked.jpg", 0)
    assert dict(list_images(tmp_path).skipped)["locked.jpg"].startswith("unreadable")


def test_permission_error_and_fifo_are_skipped_not_fatal(tmp_path, monkeypatch):
    import builtins

    shutil.copy(JPEG, tmp_path / "locked.jpg")
    shutil.copy(JPEG, tmp_path / "fine.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if str(path).endswith("locked.jpg"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    found = list_images(tmp_path)
    assert found.paths == ["fine.jpg"]
    assert dict(found.skipped) == {"locked.jpg": "unreadable: permission denied", "pipe.jpg": "not a regular file"}


def test_missing_folder_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(ValueError, match="dataset"):
        list_images(tmp_path, dataset="imagenet")
    with pytest.raises(ValueError, match="voc2007 only"):
        list_images(tmp_path, dataset="folder", split="train")


def make_voc(root, ids, labels):
    main = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    jpegs = root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    jpegs.mkdir()
    for image_id in ids:
        shutil.copy(JPEG, jpegs / f"{image_id}.jpg")
    (main / "test.txt").write_text("".join(f"{i}\n" for i in ids))
    for k, name in enumerate(VOC_CLASSES):
        (main / f"{name}_test.txt").write_text("".join(f"{i} {labels[n][k]:2d}\n" for n, i in enumerate(ids)))


def test_voc_reader_on_a_synthetic_devkit(tmp_path):
    labels = np.full((3, 20), -1)
    labels[0, 0] = 1
    labels[1, 14] = 0
    labels[2, [6, 14]] = 1
    make_voc(tmp_path, ["000002", "000001", "000010"], labels)
    assert detect_dataset(tmp_path) == "voc2007"
    found = list_images(tmp_path, split="test")
    assert found.paths == ["JPEGImages/000002.jpg", "JPEGImages/000001.jpg", "JPEGImages/000010.jpg"]
    assert found.class_names == list(VOC_CLASSES)
    np.testing.assert_array_equal(found.targets, labels)
    with pytest.raises(ValueError, match="split file missing"):
        list_images(tmp_path, split="train")


@pytest.mark.skipif(not VOC_SAMPLE.is_dir(), reason="needs ../shared/data/voc2007-sample")
def test_voc_reader_on_the_real_sample():
    root = VOC_SAMPLE / "VOCdevkit"
    train, val, trainval = (list_images(root, split=s) for s in ("train", "val", "trainval"))
    main = root / "VOC2007" / "ImageSets" / "Main"
    for found in (train, val, trainval):  # every id of the split file, in its order, as the split recorded
        ids = (main / f"{found.split}.txt").read_text().split()
        assert found.paths == [f"JPEGImages/{i}.jpg" for i in ids] and not found.skipped
    assert set(trainval.paths) == set(train.paths) | set(val.paths) and not set(train.paths) & set(val.paths)
    assert trainval.targets.shape == (len(trainval.paths), 20) and set(np.unique(trainval.targets)) <= {-1, 0, 1}
    assert (trainval.targets == 1).any(axis=1).all()  # every VOC image shows at least one class
    person = VOC_CLASSES.index("person")
    line = (root / "VOC2007/ImageSets/Main/person_trainval.txt").read_text().split("\n")[0].split()
    assert trainval.targets[trainval.paths.index(f"JPEGImages/{line[0]}.jpg"), person] == int(line[1])


@pytest.mark.skipif(not CALTECH.is_dir(), reason="needs ../shared/data/caltech101")
def test_full_caltech101_listing():
    found = list_images(CALTECH)
    assert found.dataset == "caltech101"
    assert len(found.paths) == 9145 and not found.skipped
    assert len(found.class_names) == 102 and "BACKGROUND_Google" in found.class_names
    assert "BACKGROUND_Google/tmp" in found.paths
