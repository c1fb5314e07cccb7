"""torchvision backbones, cut after their last conv stage; weights from torchvision's API or a file."""

from __future__ import annotations

from torch import nn

from .registry import IMAGENET_NORMALIZATION, BackboneSpec, TorchvisionWeights, register_backbone


def _builder(name: str):
    def build() -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None)

    return build


def _children_but_last(count: int):
    """Trunk: the network's top-level children without the last `count` (pooling, classifier)."""
    return lambda net: nn.Sequential(*list(net.children())[:-count])


def _features(drop_last_pool: bool):
    """Trunk: ``net.features``, without its final max-pool where SPP replaces it (as in SPP-net)."""
    return lambda net: net.features[:-1] if drop_last_pool else net.features


# name, weights enum, trunk, channels, stride, min_input, interpolation, description
_TORCHVISION = (
    ("resnet50", "ResNet50_Weights.IMAGENET1K_V2", _children_but_last(2), 2048, 32, 1, "bilinear",
     "ResNet-50, last residual stage"),
    ("vgg16", "VGG16_Weights.IMAGENET1K_V1", _features(True), 512, 16, 16, "bilinear",
     "VGG-16 conv5_3 (pool5 replaced by SPP)"),
    ("alexnet", "AlexNet_Weights.IMAGENET1K_V1", _features(True), 256, 16, 31, "bilinear",
     "AlexNet conv5 (pool5 replaced by SPP)"),
    ("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", _features(False), 768, 32, 32, "bilinear",
     "ConvNeXt-T, last stage"),
    ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", _features(False), 1280, 32, 1, "bicubic",
     "EfficientNet-B0 (torchvision), last conv"),
)

for _name, _enum, _trunk, _channels, _stride, _min_input, _interp, _desc in _TORCHVISION:
    register_backbone(lambda n=_name, e=_enum, t=_trunk, c=_channels, s=_stride, m=_min_input, i=_interp, d=_desc:
                      BackboneSpec(name=n, build=_builder(n), trunk=t, weights=TorchvisionWeights(e),
                                   normalization=IMAGENET_NORMALIZATION, channels=c, stride=s, min_input=m,
                                   interpolation=i, description=d))
