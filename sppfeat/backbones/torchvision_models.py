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


def torchvision_spec(name: str, weights: str, trunk, channels: int, stride: int, min_input: int,
                     interpolation: str) -> BackboneSpec:
    """A torchvision model `name` with the weights enum entry `weights` and ImageNet normalisation."""
    return BackboneSpec(name=name, build=_builder(name), trunk=trunk, weights=TorchvisionWeights(weights),
                        normalization=IMAGENET_NORMALIZATION, channels=channels, stride=stride,
                        min_input=min_input, interpolation=interpolation)


@register_backbone
def resnet50() -> BackboneSpec:
    """ResNet-50, last residual stage."""
    return torchvision_spec("resnet50", "ResNet50_Weights.IMAGENET1K_V2", _children_but_last(2), 2048, 32, 1,
                            "bilinear")


@register_backbone
def vgg16() -> BackboneSpec:
    """VGG-16 conv5_3 (pool5 replaced by SPP, as in the paper)."""
    return torchvision_spec("vgg16", "VGG16_Weights.IMAGENET1K_V1", _features(True), 512, 16, 16, "bilinear")


@register_backbone
def alexnet() -> BackboneSpec:
    """AlexNet conv5 (pool5 replaced by SPP, as in the paper)."""
    return torchvision_spec("alexnet", "AlexNet_Weights.IMAGENET1K_V1", _features(True), 256, 16, 31, "bilinear")


@register_backbone
def convnext_tiny() -> BackboneSpec:
    """ConvNeXt-T, last stage."""
    return torchvision_spec("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", _features(False), 768, 32, 32,
                            "bilinear")


@register_backbone
def efficientnet_b0() -> BackboneSpec:
    """EfficientNet-B0 (torchvision), last conv."""
    return torchvision_spec("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", _features(False), 1280, 32,
                            1, "bicubic")
