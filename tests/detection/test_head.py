"""The fine-tuned detection head: how training windows are labelled and sampled, its pooling and
scores against forward passes written out in numpy, its model file, and its training's guards."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sppfeat.detection.finetune import HeadImage, fit_head, label_head_windows, sample_windows
from sppfeat.detection.head import BOX_STD, WindowHead
from sppfeat.detection.maps import ImageMap
from sppfeat.detection.settings import HeadSettings


def test_windows_are_labelled_by_their_overlap_with_the_boxes():
    boxes = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], float)
    labels, difficult = np.array([2, 1]), np.array([False, True])
    windows = np.array([[0, 0, 100, 90],      # IoU 0.9 with box 0: class 2 (label 3)
                        [0, 0, 100, 200],     # IoU exactly 0.5: class 2
                        [50, 0, 150, 100],    # IoU 1/3: background
                        [90, 0, 190, 100],    # IoU 10/190 = 0.053: below 0.1, unused (there is background above)
                        [200, 200, 300, 290],  # IoU 0.9 with the difficult box: neither
                        [400, 400, 450, 450]], float)  # touches nothing: unused
    label, offsets = label_head_windows(windows, boxes, labels, difficult, HeadSettings())
    assert label.tolist() == [3, 3, 0, -1, -1, -1]
    # R-CNN's offsets of window 0 onto box 0, by hand: centres (50, 45) -> (50, 50) over a 100×90 window
    np.testing.assert_allclose(offsets[0], [0, 5 / 90, 0, np.log(100 / 90)])
    np.testing.assert_allclose(offsets[1], [0, -50 / 200, 0, np.log(100 / 200)])
    # without any window in [0.1, 0.5), background comes from below 0.1
    label, _ = label_head_windows(windows[[0, 3, 5]], boxes, labels, difficult, HeadSettings())
    assert label.tolist() == [3, 0, 0]
    # an image without boxes: every window is background
    label, _ = label_head_windows(windows, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0, bool), HeadSettings())
    assert label.tolist() == [0] * len(windows)


def image_with(n_fg: int, n_bg: int) -> HeadImage:
    label = np.r_[np.ones(n_fg, int) * 4, np.zeros(n_bg, int)]
    return HeadImage(None, np.zeros((len(label), 4), int), label, np.zeros((len(label), 4), np.float32), np.zeros(0))


@pytest.mark.parametrize("n_fg, n_bg, expected", [(40, 500, (16, 48)), (5, 500, (5, 59)), (10, 0, (10, 0)),
                                                  (0, 30, (0, 30))])
def test_a_batch_takes_at_most_a_quarter_objects(n_fg, n_bg, expected):
    image, n_bg_all = image_with(n_fg, n_bg), n_bg
    picks, n_bg = sample_windows(image, HeadSettings(windows_per_image=64, fg_fraction=0.25),
                                 np.random.default_rng(0))
    assert len(set(picks.tolist())) == len(picks)  # no window twice
    assert ((image.label[picks] > 0).sum(), (image.label[picks] == 0).sum()) == expected and n_bg == expected[1]
    picks, n_bg = sample_windows(image, HeadSettings(hard_background=4), np.random.default_rng(0))
    assert (image.label[picks] > 0).sum() == expected[0] and n_bg == expected[1]
    assert (image.label[picks] == 0).sum() == min(n_bg_all, 4 * expected[1])


def pooled_by_hand(reduced: np.ndarray, box, levels) -> np.ndarray:
    """The pyramid's bins of one cell box, each bin's maximum, in (level, channel, row, column) order."""
    x0, y0, x1, y1 = box
    out = []
    for n in levels:
        level = np.empty((reduced.shape[0], n, n))
        for i in range(n):
            r0, r1 = y0 + (i * (y1 - y0)) // n, y0 + -(-(i + 1) * (y1 - y0) // n)
            for j in range(n):
                c0, c1 = x0 + (j * (x1 - x0)) // n, x0 + -(-(j + 1) * (x1 - x0) // n)
                level[:, i, j] = reduced[:, r0:r1, c0:c1].max(axis=(1, 2))
        out.append(level.ravel())
    return np.concatenate(out)


def small_head(seed=0, levels=(2, 1)) -> WindowHead:
    torch.manual_seed(seed)
    head = WindowHead(8, 4, (6,), levels, n_classes=3, dropout=0.5)
    for p in head.parameters():  # larger weights than the init's, so that every output matters
        torch.nn.init.normal_(p, std=0.5)
    return head.eval()


def test_scores_are_the_softmax_of_a_forward_pass_written_out():
    head, rng = small_head(), np.random.default_rng(1)
    fmap = rng.random((8, 7, 9)).astype(np.float32)
    cells = np.array([[0, 0, 9, 7], [2, 1, 5, 6], [8, 6, 9, 7], [3, 3, 7, 4]])
    probs, offsets, hidden = head.predict(torch.from_numpy(fmap), cells)
    w = {k: v.detach().numpy().astype(np.float64) for k, v in head.state_dict().items()}
    reduced = np.maximum(np.einsum("oc,chw->ohw", w["reduce.weight"][:, :, 0, 0], fmap) + w["reduce.bias"][:, None, None],
                         0)
    for box, p, o, f in zip(cells, probs, offsets, hidden):
        hidden = np.maximum(w["hidden.0.weight"] @ pooled_by_hand(reduced, box, (2, 1)) + w["hidden.0.bias"], 0)
        np.testing.assert_allclose(f, hidden, rtol=1e-4, atol=1e-6)
        logits = w["classify.weight"] @ hidden + w["classify.bias"]
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(p, softmax[1:], rtol=1e-4, atol=1e-6)  # the background's column dropped
        np.testing.assert_allclose(o, (w["box.weight"] @ hidden + w["box.bias"]).reshape(3, 4) * BOX_STD,
                                   rtol=1e-4, atol=1e-6)


def roi_pool_is_exact(size: int, n: int) -> bool:
    """Whether roi_pool's float32 bin ends, ceil((i + 1) · (size / n)), are the pyramid's for every bin."""
    step = np.float32(size) / np.float32(n)
    return all(int(np.ceil(np.float32(i + 1) * step)) == -(-(i + 1) * size // n) for i in range(n))


def test_training_pools_as_the_pyramid_does():
    head, rng = small_head(levels=(3, 2, 1)), np.random.default_rng(2)
    reduced = torch.from_numpy(rng.random((2, 4, 23, 31)).astype(np.float32))
    boxes = []
    while len(boxes) < 200:
        x0, y0 = rng.integers(0, 30), rng.integers(0, 22)
        x1, y1 = rng.integers(x0 + 1, 32), rng.integers(y0 + 1, 24)
        if all(roi_pool_is_exact(s, n) for s in (x1 - x0, y1 - y0) for n in (3, 2, 1)):
            boxes.append([len(boxes) % 2, x0, y0, x1, y1])
    boxes = np.array(boxes)
    pooled = head.pool_for_training(reduced, torch.from_numpy(boxes)).numpy()
    for row, (b, *box) in zip(pooled, boxes):
        np.testing.assert_array_equal(row, pooled_by_hand(reduced[b].numpy(), box, (3, 2, 1)))
        np.testing.assert_array_equal(row, head.pool(reduced[b], np.array([box]))[0].numpy())


def synthetic_images(n_images: int, rng) -> list[HeadImage]:
    """Maps of 8 channels where class k's objects light channel k: a head must learn it."""
    images = []
    for _ in range(n_images):
        fmap = rng.random((8, 10, 12)).astype(np.float32) * 0.1
        k = int(rng.integers(0, 3))
        fmap[k, 2:6, 3:8] += 2
        cells = np.array([[3, 2, 8, 6]] * 4 + [[0, 6, 3, 10], [8, 0, 12, 4], [0, 0, 3, 3], [9, 6, 12, 10]])
        label = np.r_[[k + 1] * 4, [0] * 4]
        images.append(HeadImage(ImageMap(torch.from_numpy(fmap).half(), (320, 384), (320, 384), (320, 384), 1),
                                cells, label, np.zeros((8, 4), np.float32), np.array([k])))
    return images


def fake_rv():
    return SimpleNamespace(device=torch.device("cpu"), model=SimpleNamespace(channels=8),
                           config=SimpleNamespace(levels=(2, 1)))


def test_training_learns_and_is_deterministic():
    settings = HeadSettings(reduced=8, hidden=(32,), epochs=10, windows_per_image=8, lr=3e-2, dropout=0.1)
    images = synthetic_images(12, np.random.default_rng(3))
    head, stats = fit_head(images, 3, fake_rv(), settings, quiet=True)
    again, _ = fit_head(images, 3, fake_rv(), settings, quiet=True)
    for (name, a), b in zip(head.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert stats["epochs"][-1]["softmax"] < 0.5 * stats["epochs"][0]["softmax"]
    right = 0
    for im in synthetic_images(20, np.random.default_rng(4)):
        probs = head.predict(im.image_map.fmap, im.cells[:1])[0]
        right += int(probs[0].argmax() == im.objects[0])
    assert right >= 19


def test_hard_background_counts_the_hardest_candidates():
    from sppfeat.detection.finetune import head_loss

    torch.manual_seed(0)
    head = WindowHead(8, 8, (16,), (2, 1), n_classes=3, dropout=0.0)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.5)
    images = synthetic_images(2, np.random.default_rng(8))
    picks = [(np.arange(8), 2), (np.arange(8), 3)]  # 4 objects and 4 background candidates each
    loss, parts = head_loss(head, images, picks, box_weight=0.0, device=torch.device("cpu"))
    counted = []
    for im, (p, n_bg) in zip(images, picks):
        with torch.inference_mode():
            logits = head(head.pool(head.reduced_map(im.image_map.fmap), im.cells[p]))[0].numpy()
        logits = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        entropy = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(p)), im.label[p]]
        counted += [*entropy[im.label[p] > 0], *np.sort(entropy[im.label[p] == 0])[::-1][:n_bg]]
    assert parts["softmax"] == pytest.approx(np.mean(counted), rel=1e-5)


def test_a_diverging_training_stops_with_a_reason():
    settings = HeadSettings(reduced=4, hidden=(16,), epochs=3, windows_per_image=8, lr=1e12)
    with pytest.raises(ValueError, match="diverged .* smaller learning rate than 1e\\+12"):
        fit_head(synthetic_images(6, np.random.default_rng(5)), 3, fake_rv(), settings, quiet=True)


@pytest.mark.parametrize("lr", [1e30, 1e35])
def test_a_training_that_diverges_in_its_last_step_stops_too(lr):
    """One step only: its loss was finite, the weights it leaves are not usable."""
    settings = HeadSettings(reduced=4, hidden=(16,), epochs=1, images_per_batch=4, windows_per_image=8, lr=lr)
    with pytest.raises(ValueError, match="diverged .scores not finite after the last step"):
        fit_head(synthetic_images(4, np.random.default_rng(5)), 3, fake_rv(), settings, quiet=True)


@pytest.mark.parametrize("fields", [{"hidden": (0,)}, {"hidden": ()}, {"reduced": 0}, {"epochs": 0}, {"lr": 0},
                                    {"fg_fraction": 0}, {"bg_iou_low": 0.6}, {"dropout": 1},
                                    {"lr": float("inf")}, {"weight_decay": float("nan")}])
def test_bad_head_settings_are_refused(fields):
    with pytest.raises(ValueError, match="head"):
        HeadSettings(**fields)


def test_the_model_file_keeps_the_head(tmp_path):
    from sppfeat.detection.model import DetectorModel, load_detector, save_detector

    head = small_head()
    save_detector(tmp_path / "m.h5", DetectorModel(None, None, ["a", "b", "c"], {}, {}, {"head": {"epochs": 1}},
                                                   head=head))
    loaded = load_detector(tmp_path / "m.h5")
    assert loaded.score_kind == "probability" and loaded.vote_floor == 0 and loaded.coef is None
    for (name, a), b in zip(head.state_dict().items(), loaded.head.state_dict().values()):
        assert torch.equal(a, b), name
    assert not loaded.head.training  # dropout off: scores are deterministic


def test_a_model_file_from_before_the_head_still_scores_with_its_svms(tmp_path):
    """A file in the layout train-detector wrote before the head (written here with h5py)."""
    import h5py

    from sppfeat.detection.model import load_detector

    rng = np.random.default_rng(6)
    coef, intercept = rng.normal(size=(2, 6)).astype(np.float32), np.array([0.5, -0.25])
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs.update(sppfeat_kind="detector_model", format_version=1, created="2026-12-01T00:00:00+00:00",
                       sppfeat_version="0.1.0", feature_config=json.dumps({"backbone": "efficientnet_lite0"}),
                       proposals="{}", training='{"rounds": 3}')
        f.create_dataset("coef", data=coef)
        f.create_dataset("intercept", data=intercept)
        f.create_dataset("class_names", data=["cat", "dog"], dtype=h5py.string_dtype())
    model = load_detector(tmp_path / "old.h5")
    assert model.head is None and model.score_kind == "margin" and model.vote_floor == -1
    x = rng.random((4, 6)).astype(np.float32)
    np.testing.assert_allclose(model.scores(x), x @ coef.T + intercept, rtol=1e-6)
