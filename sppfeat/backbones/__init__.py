"""Backbone registry and the networks it knows (importing this package registers them all, without
importing torch)."""

from . import catalog  # noqa: F401  (registration side effects)
from .registry import (BACKBONES, DEFAULT_BACKBONE, BackboneSpec, LoadedBackbone, Normalization,
                       WeightsUnavailable, get_backbone_spec, load_backbone, register_backbone)

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "BackboneSpec", "LoadedBackbone", "Normalization",
           "WeightsUnavailable", "get_backbone_spec", "load_backbone", "register_backbone"]
