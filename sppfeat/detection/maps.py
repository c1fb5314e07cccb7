"""The conv map of an image, computed once, and the vectors of any number of its windows pooled
from it (SPP-net's detection: one network pass per image, not per window).

A map is kept in float16 (about 1.7 MB for a 688 × 917 image with a 1,280-channel stride-32
layer), in memory or in a temporary file (MapFile), and hard-negative mining pools windows from
the maps on the fly instead of storing window vectors (35.8 KB each at levels 3,2,1, ~70 MB per
image at 2,000 windows).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..backbones.geometry import cell_centres, trace_layers
from ..classify.svm import normalize_features
from ..config import ExtractionConfig
from ..data.decode import DecodeError, decode_scales
from ..features.descriptor import build_descriptor
from ..features.in_memory import resolved_for
from ..features.projection import boxes_to_cells, orient_boxes, usable_boxes
from ..features.runtime import resolve_device
from ..roi import pyramid_pool_boxes
from .settings import check_context

POWER = 0.5  # window vectors get the signed square root, then L2 normalisation (as train-svm's default)


@dataclass
class ImageMap:
    """The conv map of one image: fmap C×h×w float16; input_size (height, width) the network saw;
    original_size (height, width) upright; stored_size (height, width) as stored on disk;
    orientation: EXIF orientation (1-8)."""

    fmap: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    stored_size: tuple[int, int]
    orientation: int

    def load(self) -> "ImageMap":
        return self


@dataclass
class StoredMap:
    """An ImageMap whose fmap waits in a :class:`MapFile`; load() reads it back (to `device`)."""

    file: "MapFile"
    offset: int
    shape: tuple[int, ...]
    device: torch.device
    fields: ImageMap  # the map's sizes, fmap empty

    def load(self) -> ImageMap:
        data = os.pread(self.file.fd, int(np.prod(self.shape)) * MapFile.DTYPE.itemsize, self.offset)
        fmap = torch.from_numpy(np.frombuffer(data, MapFile.DTYPE).reshape(self.shape).copy()).to(self.device)
        return dataclasses.replace(self.fields, fmap=fmap)


class MapFile:
    """Conv maps kept in a file (float16, one after another) rather than in memory, for a training
    set's maps (~1.7 MB each at 688 px: 2.6 GB for 1,500 images) while its negatives take the memory."""

    DTYPE = np.dtype(np.float16)

    def __init__(self, path: str | os.PathLike):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size = 0

    def keep(self, image_map: ImageMap) -> StoredMap:
        data = image_map.fmap.cpu().numpy().astype(self.DTYPE, copy=False)
        os.pwrite(self.fd, data.tobytes(), self.size)
        stored = StoredMap(self, self.size, data.shape, image_map.fmap.device,
                           dataclasses.replace(image_map, fmap=image_map.fmap.new_zeros(0)))
        self.size += data.nbytes
        return stored

    def close(self) -> None:
        os.close(self.fd)


def mirror_boxes(image: ImageMap, boxes: np.ndarray) -> np.ndarray:
    """K×4 boxes (pixels as stored) of `image` -> the same boxes in its mirrored map
    (:meth:`RegionVectors.image_map` with mirrored=True): upright, then flipped left-right."""
    upright = orient_boxes(boxes, image.orientation, image.stored_size)
    width = image.original_size[1]
    return np.stack([width - upright[:, 2], upright[:, 1], width - upright[:, 0], upright[:, 3]], axis=1)


def enlarge_boxes(boxes: np.ndarray, factor: float, stored_size: tuple[int, int]) -> np.ndarray:
    """K×4 boxes (x0, y0, x1, y1, pixels) enlarged `factor` times around their centres, clipped to
    an image of `stored_size` (height, width)."""
    boxes = np.asarray(boxes, np.float64)
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    height, width = stored_size
    return np.clip(np.concatenate([centre - half, centre + half], axis=1), 0, [width, height, width, height])


class RegionVectors:
    """Conv maps of images and window vectors pooled from them, with one network built once.

    config: extraction settings with exactly one scale (resolved here for the device); the window
    vectors are D = channels · Σ n² float32, normalised (signed square root, then L2). context: 0,
    or a factor >= 1: each window's vector is followed by that of the window enlarged this many
    times around its centre (clipped to the image), the pair divided by √2 (D doubles).
    """

    def __init__(self, config: ExtractionConfig, device: str = "auto", context: float = 0.0):
        check_context(context)
        self.context = context
        self.device = resolve_device(device)
        if config.scales is None:
            raise ValueError("the detection settings need a scale (e.g. scales=(480,))")
        if len(config.scales) != 1:
            raise ValueError(f"detection pools every window at one scale; got scales={config.scales}")
        self.model, self.config, self.weights_path = build_descriptor(resolved_for(config, self.device), self.device)
        self.policies = self.config.resize_policies()
        self.layers = trace_layers(self.model.trunk, self.device)
        self.dim = self.model.dim * (2 if context else 1)

    @torch.inference_mode()
    def image_map(self, path: str, mirrored: bool = False) -> ImageMap:
        """The map of the image file `path`; ValueError with the reason it cannot be used.
        mirrored: of the upright image flipped left-right (then stored = upright, orientation 1;
        :func:`mirror_boxes` gives the boxes in it)."""
        try:
            decoded = decode_scales(path, self.policies)[0]
        except DecodeError as exc:
            raise ValueError(str(exc)) from None
        pixels = decoded.pixels[:, ::-1] if mirrored else decoded.pixels
        fmap = self.model.feature_map(torch.from_numpy(np.ascontiguousarray(pixels[None])).to(self.device))
        if mirrored:
            stored, orientation = decoded.original_size, 1
        else:
            height, width = decoded.original_size
            stored = (width, height) if decoded.orientation in (5, 6, 7, 8) else (height, width)
            orientation = decoded.orientation
        return ImageMap(fmap[0].to(torch.float16), pixels.shape[:2], decoded.original_size, stored, orientation)

    def usable(self, image: ImageMap, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask K of the boxes (pixels as stored) that are usable, their upright clipped boxes)."""
        upright = orient_boxes(boxes, image.orientation, image.stored_size)
        clipped, reasons = usable_boxes(upright, *image.original_size)
        mask = np.array([reason is None for reason in reasons], dtype=bool)
        return mask, clipped[mask]

    def pool(self, image: ImageMap, boxes: np.ndarray) -> np.ndarray:
        """K×D float32 normalised vectors of K usable boxes (pixels as stored; see :meth:`usable`)."""
        vectors, inverse = self.pool_unique(image, boxes)
        return vectors[inverse]

    def unique_cells(self, image: ImageMap, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U×4 cell boxes (x0, y0, x1, y1) of the map, K indices into them) of K usable boxes (pixels as stored):
        windows that cover the same cells of the map have the same vector."""
        mask, upright = self.usable(image, boxes)
        if not mask.all():
            raise ValueError("pool() takes usable boxes only (see usable())")
        if len(upright) == 0:
            return np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
        in_h, in_w = image.input_size
        rows, cols = cell_centres(self.layers, in_h, 0), cell_centres(self.layers, in_w, 1)
        cells = boxes_to_cells(upright, image.original_size, (in_h, in_w), rows, cols)
        unique, inverse = np.unique(cells, axis=0, return_inverse=True)
        return unique, inverse.reshape(-1)

    @torch.inference_mode()
    def pool_unique(self, image: ImageMap, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U×D vectors, K indices into them) of K usable boxes: each window covering other cells
        of the map pooled once (2,000 windows are often a few hundred; with context, each pair of
        inner and enlarged cells)."""
        if not self.context:
            unique, inverse = self.unique_cells(image, boxes)
            return self.pool_cells(image, unique), inverse
        inner, inner_index = self.unique_cells(image, boxes)
        outer, outer_index = self.unique_cells(image, enlarge_boxes(boxes, self.context, image.stored_size))
        pairs, inverse = np.unique(np.stack([inner_index, outer_index], axis=1), axis=0, return_inverse=True)
        both = np.hstack([self.pool_cells(image, inner)[pairs[:, 0]], self.pool_enlarged(image, outer)[pairs[:, 1]]])
        return both / np.float32(np.sqrt(2)), inverse.reshape(-1)

    def pool_enlarged(self, image: ImageMap, cells: np.ndarray) -> np.ndarray:
        """Normalised vectors of U enlarged windows' cell boxes (with context): as :meth:`pool_cells`."""
        return self.pool_cells(image, cells)

    @torch.inference_mode()
    def pool_cells(self, image: ImageMap, cells: np.ndarray, levels: tuple[int, ...] | None = None) -> np.ndarray:
        """U×C·Σn² normalised vectors of U cell boxes of the map (see :meth:`unique_cells`), pooled at
        `levels` (None: the model's)."""
        levels = self.model.levels if levels is None else levels
        if len(cells) == 0:
            return np.zeros((0, image.fmap.shape[0] * sum(n * n for n in levels)), np.float32)
        fmap = image.fmap if self.model.pool == "max" else image.fmap.float()  # a maximum is exact in float16
        pooled = pyramid_pool_boxes(fmap, cells, levels, self.model.pool)
        return normalize_features(pooled, POWER).cpu().numpy()
