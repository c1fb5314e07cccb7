"""Object proposals: selective search (Uijlings et al. 2013) in its fast mode, from OpenCV contrib's
``ximgproc``, on the pixels of an image as stored (no EXIF rotation, as ``regions`` reads boxes),
and the ``proposals`` run that stores them (resume, shards, bad files skipped with reasons).

Boxes are (x1, y1, x2, y2) in pixels of the stored image, 0-based, half-open, float32, in
selective search's own ranking order (its hierarchy's first windows first). That ranking draws
random numbers from the C library's rand(); it is seeded before every image (SEED), so an image
gets the same windows in any process and order.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.decode import to_rgb
from ..data.discover import ImageList, list_images
from ..libc import seed_rand
from ..shards import check_shard, shard_bounds, shard_path
from ..storage.progress import listing_fingerprint
from .proposal_file import ProposalSet, write_proposals
from .runs import ImageResult, check_cores, run_images, start_run

METHODS = ("selective-search-fast", "selective-search-quality")
SEED = 0  # of the C library's rand(), which OpenCV's selective search ranks its windows with


@dataclass(frozen=True)
class ProposalConfig:
    """method: METHODS; max_boxes: windows kept per image, the first in selective search's ranking
    (the paper's 2,000); min_size: windows narrower or shorter than this many pixels are dropped;
    max_side: an image whose longer side is larger is searched at this size and its windows scaled
    back (the search's time grows with the pixels)."""

    method: str = "selective-search-fast"
    max_boxes: int = 2000
    min_size: int = 8
    max_side: int = 500

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("max_boxes", "min_size", "max_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def to_record(self) -> dict:
        import cv2

        return {**asdict(self), "implementation": f"opencv-contrib {cv2.__version__}", "rand_seed": SEED}

    @classmethod
    def from_record(cls, record: dict) -> "ProposalConfig":
        return cls(**{key: record[key] for key in ("method", "max_boxes", "min_size", "max_side")})


def stored_rgb(path: str | os.PathLike) -> np.ndarray:
    """H×W×3 uint8 pixels of an image file as stored (no EXIF rotation; alpha over white)."""
    with Image.open(path) as im:
        im.seek(0)
        return np.asarray(to_rgb(im))


def selective_search(pixels: np.ndarray, config: ProposalConfig = ProposalConfig()) -> np.ndarray:
    """K×4 float32 boxes of an H×W×3 uint8 RGB image (K <= config.max_boxes), in ranking order."""
    import cv2
    from cv2.ximgproc.segmentation import createSelectiveSearchSegmentation

    height, width = pixels.shape[:2]
    factor = min(1.0, config.max_side / max(height, width))
    image = np.ascontiguousarray(pixels[:, :, ::-1])  # OpenCV's BGR
    if factor < 1:
        image = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                           interpolation=cv2.INTER_AREA)
    seed_rand(SEED)
    search = createSelectiveSearchSegmentation()
    search.setBaseImage(image)
    search.switchToSelectiveSearchFast() if config.method.endswith("fast") else search.switchToSelectiveSearchQuality()
    rects = np.asarray(search.process(), dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / factor
    boxes = np.clip(boxes, 0, [width, height, width, height])
    keep = ((boxes[:, 2] - boxes[:, 0]) >= config.min_size) & ((boxes[:, 3] - boxes[:, 1]) >= config.min_size)
    boxes = np.round(boxes[keep]).astype(np.float32)
    _, first = np.unique(boxes, axis=0, return_index=True)  # identical windows once, the first ranked
    return boxes[np.sort(first)][:config.max_boxes]


def propose_file(path: str, config: ProposalConfig) -> tuple[np.ndarray, tuple[int, int]]:
    """(boxes K×4, (height, width)) of an image file; ValueError with the reason it cannot be used."""
    import cv2

    cv2.setNumThreads(1)  # one image per process: the processes are the parallelism
    try:
        pixels = stored_rgb(path)
    except Exception as exc:  # a hostile file of any kind is a skip, not a crash
        raise ValueError(f"undecodable image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    return selective_search(pixels, config), pixels.shape[:2]


def _work(image_list: ImageList, config: ProposalConfig, index: int) -> ImageResult:
    try:
        boxes, (height, width) = propose_file(image_list.file(index), config)
    except ValueError as exc:
        return ImageResult(index, {}, str(exc))
    if len(boxes) == 0:
        return ImageResult(index, {}, "no proposals (selective search found no window)")
    return ImageResult(index, {"boxes": boxes, "size": np.tile([height, width], (len(boxes), 1)).astype(np.int32)})


@dataclass
class ProposalsResult:
    """path: the file written; n_images: images with proposals; n_boxes: their boxes; n_skipped:
    images without; seconds: wall time of this call."""

    path: Path
    n_images: int
    n_boxes: int
    n_skipped: int
    seconds: float
    skipped: list[tuple[str, str]]


def list_inputs(images: str | os.PathLike) -> ImageList:
    """A folder (every image under it) or one image file; ValueError when there is no image."""
    image_list = list_images(images, "folder")
    if not image_list.paths:
        raise ValueError(f"no images found in {images}")
    return image_list


def proposals(images: str | os.PathLike, output: str | os.PathLike, config: ProposalConfig | None = None, *,
              cores: int | None = None, shard: tuple[int, int] | None = None, resume: bool = False,
              overwrite: bool = False, strict: bool = False, quiet: bool = False) -> ProposalsResult:
    """Selective-search windows of every image under `images` (a folder, or one image) into the
    HDF5 file `output` (:mod:`sppfeat.detection.proposal_file`). cores: processes (default: the
    cores this process may use); shard (i, n): only the i-th of n parts of the sorted image list,
    into OUT.shard-0000i-of-0000n.h5; finished images are kept in ``OUT.parts/`` until the end, and
    ``resume=True`` continues an interrupted run. ValueError for bad arguments, an output that
    exists without overwrite, or (strict) the first image that cannot be used."""
    start = time.monotonic()
    config = config or ProposalConfig()
    index, count = check_shard(shard)
    output = shard_path(output, index, count) if shard is not None else Path(output)
    image_list = list_inputs(images)
    if strict and image_list.skipped:
        raise ValueError(f"strict=True: {image_list.skipped[0][0]}: {image_list.skipped[0][1]}")
    lo, hi = shard_bounds(len(image_list.paths), index, count)
    manifest = {"settings": config.to_record(), "shard": [index, count], "n_images": len(image_list.paths),
                "listing_sha256": listing_fingerprint(image_list.paths, image_list.labels, image_list.skipped, None)}
    if output.exists() and resume and not overwrite:
        return finished(output, start, manifest["settings"])
    parts = start_run(output, manifest, resume, overwrite)
    done = parts.done()
    todo = [i for i in range(lo, hi) if i not in done]
    processes = min(check_cores(cores), max(1, len(todo)))

    def check(result: ImageResult) -> None:
        if strict and result.reason:
            raise ValueError(f"strict=True: {image_list.paths[result.index]}: {result.reason}")

    run_images(partial(_work, image_list, config), todo, parts, total=hi - lo, processes=processes if processes > 1 else 0,
               desc="proposals", quiet=quiet, on_result=check)
    results = parts.results()
    kept = [i for i in range(lo, hi) if not results[i].reason]
    skipped = list(image_list.skipped) + [(image_list.paths[i], results[i].reason) for i in range(lo, hi)
                                          if results[i].reason]
    boxes = [results[i].columns["boxes"] for i in kept]
    proposal_set = ProposalSet([image_list.paths[i] for i in kept],
                               np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
                               np.concatenate([[0], np.cumsum([len(b) for b in boxes])]).astype(np.int64),
                               np.array([results[i].columns["size"][0] for i in kept], dtype=np.int32).reshape(-1, 2),
                               None, {**manifest["settings"], "image_root": str(Path(images).resolve())}, skipped)
    write_proposals(output, proposal_set)
    parts.remove()
    return ProposalsResult(output, len(kept), len(proposal_set.boxes), len(skipped), time.monotonic() - start,
                           skipped)


def finished(output: str | os.PathLike, start: float, settings: dict | None = None) -> ProposalsResult:
    """The ProposalsResult of a complete proposal file (seconds counted from `start`, time.monotonic);
    ValueError when it was made with other `settings` (ProposalConfig records) than these."""
    from .proposal_file import read_proposals

    done = read_proposals(output)
    changed = [f"{key} {done.settings.get(key)!r}, not {value!r}" for key, value in (settings or {}).items()
               if done.settings.get(key) != value]
    if changed:
        raise ValueError(f"{output} is complete and was made with other settings ({'; '.join(changed)}): "
                         f"pass overwrite=True to replace it")
    return ProposalsResult(Path(output), len(done.paths), len(done.boxes), len(done.skipped), time.monotonic() - start,
                           done.skipped)
