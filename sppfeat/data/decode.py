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
from contextlib import contextmanager
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
    smallest input that still gives a 1×1 map).
    """

    scale: int = 224
    max_side: int = DEFAULT_MAX_SIDE
    min_side: int = 1
    interpolation: str = "bicubic"

    def __post_init__(self):
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")
        if self.max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {self.max_side}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}")

    def target_size(self, height: int, width: int) -> tuple[int, int, bool]:
        """(height, width) to resize an image to, and whether it had to be upsampled past `scale`."""
        factor = self.scale / min(height, width) if self.scale else 1.0
        if max(height, width) * factor > self.max_side:
            factor = self.max_side / max(height, width)
        h, w = max(1, round(height * factor)), max(1, round(width * factor))
        if min(h, w) >= self.min_side:
            return h, w, False
        grow = self.min_side / min(h, w)
        return max(self.min_side, math.ceil(h * grow)), max(self.min_side, math.ceil(w * grow)), True


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


def decode_image(path: str, policy: ResizePolicy, timeout: float | None = None) -> DecodedImage:
    """Read `path` and return its resized RGB pixels; raises DecodeError with a one-line reason,
    also when decoding takes longer than `timeout` seconds."""
    try:
        with time_limit(timeout):
            return _decode_file(path, policy)
    except _TimeUp:
        raise DecodeError(f"decoding took longer than {timeout:g} s") from None


def _decode_file(path: str, policy: ResizePolicy) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not the user's business
            with Image.open(path) as im:
                return decode_pil(im, policy)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too large: {exc}".split(". ")[0]) from None
    except MemoryError:
        raise DecodeError("out of memory while decoding") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        message = str(exc).splitlines()[0] if str(exc) else "no message"
        raise DecodeError(f"cannot decode ({type(exc).__name__}: {message})") from None


def decode_pil(im: Image.Image, policy: ResizePolicy) -> DecodedImage:
    """An opened image -> its resized RGB pixels (EXIF orientation applied; a JPEG not yet loaded is
    decoded at a reduced DCT scale when the target allows). Raises DecodeError for an empty image."""
    width, height = im.size
    if width < 1 or height < 1:
        raise DecodeError(f"empty image ({width}×{height})")
    orientation = im.getexif().get(0x0112, 1) if im.format in ("JPEG", "TIFF", "PNG", "WEBP") else 1
    swapped = orientation in _SWAPPING_ORIENTATIONS
    oriented = (width, height) if swapped else (height, width)  # (height, width) as displayed
    target_h, target_w, upsampled = policy.target_size(*oriented)
    if im.format == "JPEG":
        stored_target = (target_h, target_w) if swapped else (target_w, target_h)
        im.draft(im.mode, stored_target)  # DCT-domain downscale by 2, 4 or 8 when the target allows
    im.load()
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not cost the image
        pass
    im = to_rgb(im)
    if im.size != (target_w, target_h):
        im = im.resize((target_w, target_h), _INTERPOLATION[policy.interpolation])
    return DecodedImage(np.asarray(im, dtype=np.uint8).copy(), oriented, upsampled, orientation)
