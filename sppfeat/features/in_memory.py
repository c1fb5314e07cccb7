"""`Describer`, `describe` and `describe_regions`: SPP vectors of images (or of boxes of an image)
held in memory (PIL images, uint8 arrays) or named by path, returned as one array; the same
decoding, network and pooling as `extract` and `regions`, with no files written."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..config import REGION_DEFAULTS, ExtractionConfig
from ..data.decode import DecodeError, DecodedImage, ResizePolicy, decode_pil, decode_scales
from .boxes import RegionDescriber, region_item, upright_boxes
from .descriptor import DecodedItem, build_descriptor, describe_items
from .projection import usable_boxes
from .runtime import resolve_device

ImageLike = str | os.PathLike | Image.Image | np.ndarray


class Describer:
    """Describes images, or boxes of an image, held in memory or named by path, with the weights
    loaded (and checked) and the network built once, on one device: for a program that describes
    images one call at a time. ``describe`` and ``describe_regions`` (the functions) build one per call.

    config: the settings (default ExtractionConfig(); `dataset` only chooses the data set's measured
    settings where `config` leaves them unset; `split` and `dtype` do not apply: vectors are
    float32); device: 'auto', 'cpu', 'cuda' or 'cuda:N'; batch_size: images per forward pass of
    :meth:`describe`. Both methods use the same settings: whole images need combine='max' (the only
    choice with one scale); boxes take either combine.

    Attributes: config_ (the settings resolved for the device, with the weights' sha256: what
    ``extract`` would record), device_ (torch.device), dim (D = channels · Σ n², the vector length).
    """

    def __init__(self, config: ExtractionConfig | None = None, *, device: str = "auto", batch_size: int = 16):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device_ = resolve_device(device)
        config = ExtractionConfig() if config is None else config
        self.model, self.config_, _ = build_descriptor(resolved_for(config, self.device_), self.device_)
        self.dim = self.model.dim
        self._policies = self.config_.resize_policies()
        self._regions: RegionDescriber | None = None  # traced on the first describe_regions

    def __repr__(self) -> str:
        c = self.config_
        return (f"Describer(backbone={c.backbone!r}, scales={c.scales}, levels={c.levels}, dim={self.dim}, "
                f"device={str(self.device_)!r})")

    def describe(self, images: Sequence[ImageLike] | ImageLike) -> np.ndarray:
        """SPP vectors of `images`: an (N, D) float32 array, row k for images[k].

        An image is a path (decoded exactly as ``extract`` decodes files, so a row equals the one
        ``extract`` writes for that file up to batching's last bits), a PIL image (EXIF orientation
        applied, used at the resolution it has) or a uint8 array H×W×3 (RGB) or H×W (grey). A single
        image may be passed on its own; an N×H×W×3 array is N images.
        Raises ValueError naming the first image that cannot be used.
        """
        self.config_.check_whole_images()
        if isinstance(images, (str, os.PathLike, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim < 4):
            images = [images]
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            items = [DecodedItem(k, [image.pixels for image in decoded(images[k], f"images[{k}]", self._policies)],
                                 (0, 0), False, None) for k in range(start, min(start + self.batch_size, len(images)))]
            for item in describe_items(self.model, items, self.device_):
                out[item.index] = item.vector
        return out

    def describe_regions(self, image: ImageLike, boxes) -> np.ndarray:
        """SPP vectors of boxes of one image: a (K, D) float32 array, row k for boxes[k].

        image: as for :meth:`describe` (a path is decoded as ``regions`` decodes it); boxes: K×4 pixels
        (x1, y1, x2, y2), 0-based, half-open, of the image as stored (before EXIF orientation).
        Raises ValueError naming the first box that cannot be used (empty, inverted, outside the
        image, not finite) or an image that cannot.
        """
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be a K×4 array (x1, y1, x2, y2), got shape {boxes.shape}")
        item = region_item(0, decoded(image, "image", self._policies), boxes, 0)
        for k, reason in enumerate(usable_boxes(upright_boxes(item), *item.original_size)[1]):
            if reason is not None:
                raise ValueError(f"boxes[{k}]: {reason}")
        if self._regions is None:
            self._regions = RegionDescriber(self.model, self.config_, self.device_)
        self._regions([item], self.device_)
        return item.rows


def describe(images: Sequence[ImageLike] | ImageLike, config: ExtractionConfig | None = None, *,
             device: str = "auto", batch_size: int = 16) -> np.ndarray:
    """SPP vectors of `images`: an (N, D) float32 array, row k for images[k], D = channels · Σ n².
    Loads the network for this call: ``Describer(config, device=device, batch_size=batch_size).describe(images)``
    (see :class:`Describer` for the images and settings it takes; config default ExtractionConfig())."""
    return Describer(config, device=device, batch_size=batch_size).describe(images)


def describe_regions(image: ImageLike, boxes, config: ExtractionConfig | None = None, *,
                     device: str = "auto") -> np.ndarray:
    """SPP vectors of boxes of one image: a (K, D) float32 array, row k for boxes[k]. Loads the
    network for this call: ``Describer(config, device=device).describe_regions(image, boxes)`` (see
    :meth:`Describer.describe_regions`), with config default REGION_DEFAULTS."""
    return Describer(REGION_DEFAULTS if config is None else config, device=device).describe_regions(image, boxes)


def resolved_for(config: ExtractionConfig, device) -> ExtractionConfig:
    """`config` resolved for images in memory: the data set's measured settings when `dataset`
    names one, the general ones otherwise, and the device's shapes and compute."""
    return config.resolved("folder" if config.dataset == "auto" else config.dataset, config.split, device.type)


def decoded(image: ImageLike, name: str, policies: Sequence[ResizePolicy]) -> list[DecodedImage]:
    """An image decoded once and resized under each policy; ValueError naming the argument (`name`)
    when it cannot be used."""
    try:
        return _decoded(image, name, policies)
    except DecodeError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _decoded(image: ImageLike, name: str, policies: Sequence[ResizePolicy]) -> list[DecodedImage]:
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise ValueError(f"{name}: file not found: {image}")
        return decode_scales(os.fspath(image), policies)
    if isinstance(image, Image.Image):
        image.load()  # a lazily opened JPEG is decoded whole, as given, not at a reduced DCT scale
        return decode_pil(image, policies)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"{name}: arrays must be uint8 H×W×3 (RGB) or H×W (grey), "
                             f"got {image.dtype} {image.shape}")
        return decode_pil(Image.fromarray(image), policies)
    raise ValueError(f"{name}: expected a path, a PIL image or a uint8 array, got {type(image).__name__}")
