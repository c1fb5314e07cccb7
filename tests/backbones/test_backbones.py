import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models._meta import _IMAGENET_CATEGORIES as IMAGENET

from conftest import DEMO, run_sppfeat
from sppfeat.backbones import BACKBONES, BackboneSpec, WeightsUnavailable, load_backbone, register_backbone
from sppfeat.backbones.efficientnet_lite import EfficientNetLite
from sppfeat.backbones.layers import Conv2dSame, same_padding
from sppfeat.data.decode import ResizePolicy, decode_image
from sppfeat.features.descriptor import SPPDescriptor

# Caltech 101 folder -> the ImageNet classes that name the same object
IMAGENET_MATCH = {
    "airplanes": {"airliner", "warplane", "wing"},
    "Leopards": {"leopard", "jaguar", "cheetah", "snow leopard"},
    "grand_piano": {"grand piano", "upright"},
    "pizza": {"pizza"},
    "soccer_ball": {"soccer ball"},
    "starfish": {"starfish"},
}


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite0_os16"])
def test_efficientnet_lite0_classifies_real_photos(name):
    """The full network with its ImageNet classifier, at native size: top-5 must name the object
    (at output stride 16 too: the dilated layers see what the trained ones saw)."""
    net = load_backbone(name).net
    hits = total = 0
    for folder, names in IMAGENET_MATCH.items():
        wanted = {IMAGENET.index(name) for name in names}
        for path in sorted((DEMO / folder).glob("*.jpg")):
            pixels = torch.from_numpy(decode_image(str(path), ResizePolicy(scale=0)).pixels)
            x = (pixels.permute(2, 0, 1)[None].float() - 127.0) / 128.0
            with torch.no_grad():
                top5 = set(net(x).topk(5).indices[0].tolist())
            hits += bool(top5 & wanted)
            total += 1
    assert total == 60
    assert hits / total >= 0.90, f"top-5 {hits}/{total}"


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (224, 3, 2, (0, 1)), (225, 3, 2, (1, 1)), (7, 5, 2, (2, 2)), (8, 5, 2, (1, 2)), (5, 3, 1, (1, 1)), (1, 3, 2, (1, 1)),
])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    out = math.ceil(size / stride)
    assert (size + sum(expected) - kernel) // stride + 1 == out


@pytest.mark.parametrize("h,w", [(9, 14), (16, 16), (1, 5)])
@pytest.mark.parametrize("kernel,stride,dilation",
                         [(3, 2, 1), (5, 2, 1), (3, 1, 1), (5, 1, 1), (5, 1, 2), (3, 2, 2)])
def test_conv2d_same_equals_explicit_padding(h, w, kernel, stride, dilation):
    conv = Conv2dSame(3, 4, kernel, stride, dilation=dilation)
    x = torch.randn(2, 3, h, w)
    span = dilation * (kernel - 1) + 1
    top, bottom = same_padding(h, span, stride)
    left, right = same_padding(w, span, stride)
    expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, None, stride, dilation=dilation)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[-2:] == (math.ceil(h / stride), math.ceil(w / stride))


def test_batchnorm_folding_keeps_the_feature_map():
    net = load_backbone("efficientnet_lite0").net
    x = torch.randn(1, 3, 75, 130)
    with torch.no_grad():
        before = net.forward_features(x)
        after = net.fuse().forward_features(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_output_stride_16_keeps_the_weights_and_halves_the_stride():
    """The same state dict loads into both; the map is twice as fine; only depthwise convolutions
    after the removed stride are dilated, and 16 and 32 are the only strides offered."""
    coarse, fine = load_backbone("efficientnet_lite0").net, load_backbone("efficientnet_lite0_os16").net
    for (name, a), (_, b) in zip(coarse.state_dict().items(), fine.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    with torch.no_grad():
        assert coarse.forward_features(torch.zeros(1, 3, 100, 130)).shape[-2:] == (4, 5)
        assert fine.forward_features(torch.zeros(1, 3, 100, 130)).shape[-2:] == (7, 9)
    dilated = [n for n, m in fine.named_modules() if isinstance(m, Conv2dSame) and m.dilation != (1, 1)]
    assert dilated and all(n.endswith("_depthwise_conv") for n in dilated)
    assert len(dilated) == 4  # Lite0's last strided stage (blocks 2-4 of 4) and the stride-1 stage after it
    with pytest.raises(ValueError, match="output_stride must be 16 or 32"):
        EfficientNetLite(output_stride=8)


def test_strict_loading_rejects_wrong_keys(tmp_path):
    state = EfficientNetLite().state_dict()
    state.pop("_fc.bias")
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsUnavailable, match="1 missing keys.*1 unexpected keys"):
        load_backbone("efficientnet_lite0", bad)
    with pytest.raises(WeightsUnavailable, match="does not match"):
        load_backbone("efficientnet_lite1", load_backbone("efficientnet_lite0").weights_path)


def test_duplicate_registration_raises():
    spec = BACKBONES["efficientnet_lite0"]
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone(lambda: spec)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_trunk_channels_stride_and_min_input(name):
    spec: BackboneSpec = BACKBONES[name]
    trunk = spec.trunk(spec.build().eval())
    with torch.no_grad():
        fmap = trunk(torch.zeros(1, 3, 64, 96))
        smallest = trunk(torch.zeros(1, 3, spec.min_input, spec.min_input))
    assert fmap.shape[1] == spec.channels
    assert fmap.shape[-1] == pytest.approx(96 / spec.stride, abs=1)
    assert min(smallest.shape[-2:]) >= 1


def test_torchvision_backbone_with_local_weights_file(tmp_path):
    """--weights FILE: a state dict the test writes itself, used for a torchvision backbone."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.efficientnet_b0(weights=None).eval()
    path = tmp_path / "b0.pth"
    torch.save(net.state_dict(), path)
    loaded = load_backbone("efficientnet_b0", path)
    model = SPPDescriptor(loaded, (2, 1))
    images = torch.randint(0, 256, (1, 70, 90, 3), dtype=torch.uint8)
    x = (images.permute(0, 3, 1, 2).float() - torch.tensor([123.675, 116.28, 103.53]).reshape(1, 3, 1, 1)) \
        / torch.tensor([58.395, 57.12, 57.375]).reshape(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.cat([F.adaptive_max_pool2d(net.features(x), n).flatten(1) for n in (2, 1)], 1)
        torch.testing.assert_close(model(images), expected, rtol=1e-4, atol=1e-4)


def test_offline_without_cached_weights_is_a_one_line_error(tmp_path):
    (tmp_path / "img").mkdir()
    import shutil

    shutil.copy(next(DEMO.glob("pizza/*.jpg")), tmp_path / "img" / "a.jpg")
    env = {"SPPFEAT_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"), "PATH": "/usr/bin:/bin"}
    proc = run_sppfeat("extract", tmp_path / "img", tmp_path / "o.h5", "--backbone", "resnet50", "--quiet", env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "resnet50-11ad3fa6.pth" in lines[0] and str(tmp_path / "torch") in lines[0] and "--weights" in lines[0]
    assert not (tmp_path / "o.h5").exists()


def test_a_weights_file_that_is_no_checkpoint_says_so(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    with pytest.raises(WeightsUnavailable, match=r"notes.pth is not a PyTorch checkpoint \(") as caught:
        load_backbone("efficientnet_lite0", text)
    assert "\n" not in str(caught.value)
    no_tensors = tmp_path / "dict.pth"
    torch.save({"epoch": 3, "lr": 0.1}, no_tensors)
    with pytest.raises(WeightsUnavailable, match="not a state dict of tensors"):
        load_backbone("efficientnet_lite0", no_tensors)


@pytest.mark.parametrize("torch_home", [None, "th"])
def test_torchvision_weight_files_are_where_torch_puts_them(tmp_path, monkeypatch, torch_home):
    """The registry names each torchvision file without importing torch; torchvision's URL and torch's
    hub folder are the reference."""
    import os

    import torchvision.models as tvm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if torch_home:
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / torch_home))
    else:
        monkeypatch.delenv("TORCH_HOME", raising=False)
    checked = 0
    for spec in BACKBONES.values():
        if hasattr(spec.weights, "enum"):
            enum, member = spec.weights.enum.split(".")
            url = getattr(getattr(tvm, enum), member).url
            expected = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
            assert str(spec.weights.cache_file()) == expected
            checked += 1
    assert checked == 5
