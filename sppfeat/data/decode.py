"""Decode one image file to an RGB uint8 array at the requested scale, never cropped or warped.

Colour conversions (documented in the README):
- L / 1: grey replicated to R, G, B.
- I;16 (16-bit grey) and I (32-bit integer grey): value / 257 (0..65535 -> 0..255), clipped.
- F (float grey): clipped to 0..255.
- RGBA, LA, PA, P with transparency: alpha-composited over a white background.
- P (palette), CMYK, YCbCr, LAB, HSV: Pillow's conversion to RGB (CMYK without ICC profile).
- Animated images (GIF, APNG, WebP): the first frame.
The EXIF orientation tag is applied first, so a rotated photo gives the vector of its upright pixels.
A file that takes longer than a time limit to decode is given up (SIGALRM; main thread of a process).
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Pillow refuses images above 2 × this many pixels (DecompressionBombError) before decoding them.
Image.MAX_IMAGE_PIXELS = 128_000_000

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"BM", "bmp"), (b"\x00\x00\x01\x00", "ico"),
    (b"P1", "pnm"), (b"P2", "pnm"), (b"P3", "pnm"), (b"P4", "pnm"), (b"P5", "pnm"), (b"P6", "pnm"),
)
SNIFF_BYTES = 16
_INTERPOLATION = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                  "lanczos": Image.Resampling.LANCZOS}
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
DEFAULT_DECODE_TIMEOUT = 60.0  # seconds per file and scale; the largest accepted image takes a few
MAX_DECODE_TIMEOUT = 86_400.0  # seconds: a day (the alarm timer overflows far above)
DEFAULT_MAX_SIDE = 2048  # pixels, cap on the longer side


class DecodeError(Exception):
    """An image file that cannot be turned into pixels; the message is the recorded skip reason."""


def sniff_format(header: bytes) -> str | None:
    """Image format from the first bytes of a file ('jpeg', 'png', ...), or None if not an image."""
    for magic, name in _MAGIC:
        if header.startswith(magic):
            return name
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class ResizePolicy:
    """How an image of any size becomes network input: the aspect ratio always survives.

    scale: shorter side in pixels (0 keeps the native size); max_side: cap on the longer side;
    min_side: images whose shorter side would be smaller are upsampled to it (the backbone's
    smallest input that still gives a 1×1 map); stride: when > 0, each side is then rounded to the
    nearest multiple of it (at least one stride, at most max_side rounded down), which bounds the
    distinct shapes of a folder: with a scale that is a multiple of the stride, every image not
    capped by max_side has its shorter side at the scale and its longer side at one of
    max_side / stride values (the aspect changes by at most half a stride over the longer side).
    """

    scale: int = 224
    max_side: int = DEFAULT_MAX_SIDE
    min_side: int = 1
    interpolation: str = "bicubic"
    stride: int = 0

    def __post_init__(self):
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")
        if self.max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {self.max_side}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}")
        if self.stride < 0:
            raise ValueError(f"stride must be >= 0, got {self.stride}")

    def target_size(self, height: int, width: int) -> tuple[int, int, bool]:
        """(height, width) to resize an image to, and whether it had to be upsampled past `scale`."""
        factor = self.scale / min(height, width) if self.scale else 1.0
        if max(height, width) * factor > self.max_side:
            factor = self.max_side / max(height, width)
        h, w = max(1, round(height * factor)), max(1, round(width * factor))
        upsampled = min(h, w) < self.min_side
        if upsampled:
            grow = self.min_side / min(h, w)
            h, w = max(self.min_side, math.ceil(h * grow)), max(self.min_side, math.ceil(w * grow))
        return self.snap(h), self.snap(w), upsampled

    def snap(self, side: int) -> int:
        """`side` rounded to the nearest multiple of the stride (halves up), kept between the first
        multiple >= min_side and the last <= max_side; unchanged without a stride."""
        if not self.stride:
            return side
        bottom = max(1, -(-self.min_side // self.stride)) * self.stride
        top = max(bottom, self.max_side // self.stride * self.stride)
        return min(top, max(bottom, (2 * side + self.stride) // (2 * self.stride) * self.stride))


@dataclass
class DecodedImage:
    """pixels: H×W×3 uint8 (resized); original_size: (height, width) after EXIF orientation;
    orientation: the EXIF orientation applied (1-8, 1 = none)."""

    pixels: np.ndarray
    original_size: tuple[int, int]
    upsampled: bool
    orientation: int = 1


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB by the rules in this module's docstring."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(im, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


class _TimeUp(BaseException):
    """Raised by the alarm inside Pillow; a BaseException so no `except Exception` swallows it."""


@contextmanager
def time_limit(seconds: float | None):
    """Raise _TimeUp in the block after `seconds` (no limit for 0/None, outside the main thread,
    where signals cannot be handled, or without SIGALRM, i.e. on Windows)."""
    if not seconds or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def draft_factor(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The DCT scale reduction (1, 2, 4 or 8) Pillow's JPEG draft chooses to bring a stored `size`
    (width, height) no lower than `target` (width, height)."""
    fit = min(size[0] // max(1, target[0]), size[1] // max(1, target[1]))
    return next((f for f in (8, 4, 2) if fit >= f), 1)


def decode_image(path: str, policy: ResizePolicy, timeout: float | None = None) -> DecodedImage:
    """Read `path` and return its resized RGB pixels; raises DecodeError with a one-line reason,
    also when decoding takes longer than `timeout` seconds."""
    return decode_scales(path, [policy], timeout)[0]


def decode_scales(path: str, policies: Sequence[ResizePolicy], timeout: float | None = None) -> list[DecodedImage]:
    """Read `path` once and return its pixels under each policy (see :func:`decode_pil`); raises
    DecodeError with a one-line reason, also when decoding takes longer than `timeout` seconds."""
    try:
        with time_limit(timeout):
            return _decode_file(path, policies)
    except _TimeUp:
        raise DecodeError(f"decoding took longer than {timeout:g} s") from None


def _decode_file(path: str, policies: Sequence[ResizePolicy]) -> list[DecodedImage]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not the user's business
            with ExitStack() as opened:
                im = opened.enter_context(Image.open(path))
                return decode_pil(im, policies, lambda: opened.enter_context(Image.open(path)))
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too large: {exc}".split(". ")[0]) from None
    except MemoryError:
        raise DecodeError("out of memory while decoding") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        message = str(exc).splitlines()[0] if str(exc) else "no message"
        raise DecodeError(f"cannot decode ({type(exc).__name__}: {message})") from None


def decode_pil(im: Image.Image, policies: Sequence[ResizePolicy],
               reopen: Callable[[], Image.Image] | None = None) -> list[DecodedImage]:
    """An opened image -> its resized RGB pixels under each policy (EXIF orientation applied).

    A JPEG not yet loaded is decoded at a reduced DCT scale (1/2, 1/4, 1/8) when a target allows.
    The image is decoded once for all targets that share a DCT scale and resized from there to
    each; targets that need another scale get a fresh decoding from `reopen()` (the file opened
    again), so every target's pixels equal those of decoding it alone. Without `reopen` (an image
    in memory) it is decoded once, at the scale of the largest target. DecodeError for an empty image.
    """
    width, height = im.size
    if width < 1 or height < 1:
        raise DecodeError(f"empty image ({width}×{height})")
    orientation = im.getexif().get(0x0112, 1) if im.format in ("JPEG", "TIFF", "PNG", "WEBP") else 1
    swapped = orientation in _SWAPPING_ORIENTATIONS
    oriented = (width, height) if swapped else (height, width)  # (height, width) as displayed
    targets = [policy.target_size(*oriented) for policy in policies]
    stored = [(w, h) if not swapped else (h, w) for h, w, _ in targets]  # (width, height) as stored
    factors = [draft_factor((width, height), size) if im.format == "JPEG" and reopen else 1 for size in stored]
    decoded: list[DecodedImage | None] = [None] * len(policies)
    for n, factor in enumerate(sorted(set(factors))):
        source = im if n == 0 else reopen()
        members = [k for k in range(len(policies)) if factors[k] == factor]
        if source.format == "JPEG":
            source.draft(source.mode, max((stored[k] for k in members), key=lambda size: size[0] * size[1]))
        pixels = _upright_rgb(source)
        for k in members:
            target_h, target_w, upsampled = targets[k]
            resized = pixels if pixels.size == (target_w, target_h) else pixels.resize(
                (target_w, target_h), _INTERPOLATION[policies[k].interpolation])
            decoded[k] = DecodedImage(np.asarray(resized, dtype=np.uint8).copy(), oriented, upsampled, orientation)
    return decoded


def _upright_rgb(im: Image.Image) -> Image.Image:
    """Load `im`, apply its EXIF orientation and convert it to RGB."""
    im.load()
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not cost the image
        pass
    return to_rgb(im)
