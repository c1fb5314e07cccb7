"""Decoding of odd and hostile image files: every one gives RGB pixels or a one-line reason."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO
from sppfeat.data.decode import DecodeError, ResizePolicy, decode_image, sniff_format

NATIVE = ResizePolicy(scale=0)
PHOTO = sorted((DEMO / "starfish").glob("*.jpg"))[0]


def save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


def test_grey_and_palette_and_alpha_modes(tmp_path):
    grey = Image.fromarray(np.arange(0, 240, dtype=np.uint8).reshape(12, 20))
    out = decode_image(save(tmp_path, "g.png", grey), NATIVE).pixels
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
    assert (out[..., 0] == np.asarray(grey)).all() and (out[..., 1] == out[..., 2]).all()

    rgba = Image.new("RGBA", (4, 3), (200, 10, 10, 0))  # fully transparent -> white background
    rgba.putpixel((0, 0), (200, 10, 10, 255))
    out = decode_image(save(tmp_path, "a.png", rgba), NATIVE).pixels
    assert out[0, 0].tolist() == [200, 10, 10] and out[1, 1].tolist() == [255, 255, 255]

    la = Image.new("LA", (3, 3), (0, 0))
    assert decode_image(save(tmp_path, "la.png", la), NATIVE).pixels[1, 1].tolist() == [255, 255, 255]

    palette = Image.new("P", (5, 5), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert decode_image(save(tmp_path, "p.png", palette), NATIVE).pixels[2, 2].tolist() == [10, 200, 30]
    out = decode_image(save(tmp_path, "pt.png", palette, transparency=1), NATIVE).pixels
    assert out[2, 2].tolist() == [255, 255, 255]


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    path = save(tmp_path, "g16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    assert decode_image(path, NATIVE).pixels[0, :, 0].tolist() == [0, 1, 255, 128]


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # red in CMYK
    out = decode_image(save(tmp_path, "c.jpg", cmyk, quality=95), NATIVE).pixels
    r, g, b = out[4, 8].tolist()
    assert out.shape == (8, 16, 3) and r > 200 and g < 60 and b < 60


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), c) for c in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = decode_image(str(path), NATIVE).pixels
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


def test_exif_rotated_jpeg_equals_upright_pixels(tmp_path):
    upright = Image.open(PHOTO).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated_path = save(tmp_path, "rot.png", stored, exif=exif)
    upright_path = save(tmp_path, "up.png", upright)
    a = decode_image(rotated_path, ResizePolicy(scale=100))
    b = decode_image(upright_path, ResizePolicy(scale=100))
    assert a.original_size == b.original_size == (upright.height, upright.width)
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_resize_keeps_aspect_ratio_and_caps_long_side():
    policy = ResizePolicy(scale=224, max_side=2048)
    assert policy.target_size(300, 400) == (224, 299, False)
    assert policy.target_size(10_000, 10) == (2048, 2, False)  # capped, never cropped
    assert policy.target_size(4000, 3000) == (299, 224, False)
    assert ResizePolicy(scale=0).target_size(31, 47) == (31, 47, False)
    assert ResizePolicy(scale=20, min_side=32).target_size(20, 80) == (32, 128, True)
    with pytest.raises(ValueError):
        ResizePolicy(scale=-1)


def test_tiny_and_extreme_aspect_images(tmp_path):
    one = decode_image(save(tmp_path, "1.png", Image.new("RGB", (1, 1), (9, 9, 9))), ResizePolicy(scale=224))
    assert one.pixels.shape == (224, 224, 3) and one.original_size == (1, 1)
    tall = decode_image(save(tmp_path, "t.png", Image.new("RGB", (10, 10_000))), ResizePolicy(224, 2048))
    assert tall.pixels.shape == (2048, 2, 3)
    up = decode_image(save(tmp_path, "s.png", Image.new("RGB", (3, 5))), ResizePolicy(scale=0, min_side=32))
    assert up.upsampled and min(up.pixels.shape[:2]) == 32


def test_jpeg_draft_decoding_stays_close_to_full_decoding(tmp_path):
    big = Image.open(PHOTO).convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
    path = save(tmp_path, "big.jpg", big, quality=95)
    fast = decode_image(path, ResizePolicy(scale=150)).pixels.astype(float)
    full = np.asarray(big.resize(fast.shape[1::-1], Image.Resampling.BICUBIC), dtype=float)
    assert fast.shape == (150, 200, 3)
    assert np.abs(fast - full).mean() < 4.0


def corrupt_cases(tmp_path):
    good = PHOTO.read_bytes()
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
    png = bytearray(png.getvalue())
    png[33 - 4:33] = b"\0\0\0\0"  # IHDR CRC
    huffman = bytearray(good)
    dht = huffman.find(b"\xff\xc4")
    huffman[dht + 5:dht + 40] = b"\xff" * 35
    cases = {
        "zero.jpg": b"",
        "truncated_a.jpg": good[: len(good) // 3],
        "truncated_b.jpg": good[:200],
        "random.jpg": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "text.png": b"hello, this is not a picture\n" * 10,
        "bad_crc.png": bytes(png),
        "huffman.jpg": bytes(huffman),
        "jpeg_magic_only.jpg": b"\xff\xd8\xff\xe0" + b"\0" * 50,
    }
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


def test_corrupt_files_raise_decode_error_with_reason(tmp_path):
    for name, path in corrupt_cases(tmp_path).items():
        with pytest.raises(DecodeError) as info:
            decode_image(str(path), ResizePolicy())
        message = str(info.value)
        assert message and "\n" not in message, name


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width × height pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_rejected_quickly(tmp_path):
    import time

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(40_000, 40_000))
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="too large"):
        decode_image(str(path), ResizePolicy())
    assert time.perf_counter() - start < 1.0


def test_sniff_format():
    assert sniff_format(PHOTO.read_bytes()[:16]) == "jpeg"
    assert sniff_format(b"\x89PNG\r\n\x1a\n\0\0") == "png"
    assert sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_format(b"hello world") is None
