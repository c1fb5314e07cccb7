"""A folder of hostile and odd files through the whole CLI, the decode time limit, and a fuzz test.

Expected of every case: good images extracted, bad ones in `skipped` with a specific reason, no
traceback, no hang.
"""

import io
import os
import signal
import tempfile
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import FAST_ARGS, run_sppfeat
from sppfeat import ExtractionConfig, Runtime, extract
from sppfeat.data.decode import DecodeError, ResizePolicy, decode_image
from sppfeat.storage.feature_file import open_features
from test_decode import PHOTO, corrupt_cases, png_bomb


def good_oddities(folder):
    """Readable images in unusual forms: name -> expected original (height, width)."""
    photo = Image.open(PHOTO)
    cases = {}
    photo.save(folder / "with spaces   in name .jpg"); cases["with spaces   in name .jpg"] = photo.size[::-1]
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "one_pixel.png"); cases["one_pixel.png"] = (1, 1)
    Image.new("L", (10_000, 10), 128).save(folder / "wide.png"); cases["wide.png"] = (10, 10_000)
    Image.new("L", (10, 10_000), 128).save(folder / "tall.png"); cases["tall.png"] = (10_000, 10)
    grey16 = Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 20).reshape(48, 64))
    grey16.save(folder / "grey16.png"); cases["grey16.png"] = (48, 64)
    photo.convert("CMYK").save(folder / "cmyk.jpg"); cases["cmyk.jpg"] = photo.size[::-1]
    palette = photo.convert("P")
    palette.info["transparency"] = 0
    palette.save(folder / "palette_alpha.png", transparency=0); cases["palette_alpha.png"] = photo.size[::-1]
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:]); cases["anim.gif"] = (30, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    photo.save(folder / "rotated.jpg", exif=exif); cases["rotated.jpg"] = photo.size  # displayed: swapped
    odd = os.fsencode(folder) + b"/caf\xe9_latin1.jpg"  # not valid UTF-8
    photo.save(odd, format="JPEG"); cases["caf\\xe9_latin1.jpg"] = photo.size[::-1]
    return cases


def test_hostile_folder_through_the_cli(tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    good = good_oddities(folder)
    bad = {name: path.read_bytes() for name, path in corrupt_cases(tmp_path).items()}
    bad["bomb.png"] = png_bomb(40_000, 40_000)
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    os.mkdir(folder / "sub")
    os.symlink(folder, folder / "sub" / "loop")
    out = tmp_path / "out.h5"
    start = time.perf_counter()
    run = run_sppfeat("extract", folder, out, *FAST_ARGS, "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and time.perf_counter() - start < 120
    ff = open_features(out)
    sizes = dict(zip(ff.paths, map(tuple, ff.image_sizes.tolist())))
    assert sizes == good
    reasons = dict(ff.skipped)
    assert set(reasons) == set(bad) | {"sub/loop"}
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["text.png"].startswith("not an image")
    assert reasons["bomb.png"].startswith("too large")
    assert "symlink loop" in reasons["sub/loop"]
    for name in ("truncated_a.jpg", "truncated_b.jpg", "bad_crc.png", "huffman.jpg", "jpeg_magic_only.jpg"):
        assert reasons[name].startswith("cannot decode ("), (name, reasons[name])
    assert all("\n" not in r for r in reasons.values())


def test_rotated_jpeg_vector_equals_the_upright_one(tmp_path):
    folder = tmp_path / "rot"
    folder.mkdir()
    upright = Image.open(PHOTO).transpose(Image.Transpose.ROTATE_270)  # what orientation 6 displays
    upright.save(folder / "a_upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    lossless = Image.open(PHOTO)
    lossless.save(folder / "b_rotated.png", exif=exif)
    extract(folder, tmp_path / "r.h5", ExtractionConfig(scales=(64,), levels=(2, 1)), Runtime(workers=0), quiet=True)
    x = open_features(tmp_path / "r.h5").read_features()
    assert np.allclose(x[0], x[1], atol=1e-5)


def test_a_slow_decode_is_given_up_after_the_time_limit(tmp_path, monkeypatch):
    import sppfeat.data.decode as decode_module

    slow = tmp_path / "slow.jpg"
    slow.write_bytes(PHOTO.read_bytes())
    real = decode_module._decode_file

    def hang(path, policy):
        if path.endswith("slow.jpg"):
            time.sleep(30)
        return real(path, policy)

    monkeypatch.setattr(decode_module, "_decode_file", hang)
    handler_before = signal.getsignal(signal.SIGALRM)
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="longer than 0.5 s"):
        decode_image(str(slow), ResizePolicy(), timeout=0.5)
    assert time.perf_counter() - start < 5
    (tmp_path / "fine.jpg").write_bytes(PHOTO.read_bytes())
    result = extract(tmp_path, tmp_path / "o.h5", ExtractionConfig(scales=(64,), levels=(1,)),
                     Runtime(workers=0, decode_timeout=0.5), quiet=True)
    assert result.n_images == 1 and result.skip_reasons == {"decoding took longer than 0.5 s": 1}
    assert signal.getsignal(signal.SIGALRM) == handler_before  # the alarm handler is put back


SEEDS = [PHOTO.read_bytes()]
_png = io.BytesIO()
Image.open(PHOTO).convert("RGBA").resize((40, 30)).save(_png, format="PNG")
SEEDS.append(_png.getvalue())


@st.composite
def mutated_image_bytes(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "zero"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[position:]
        elif kind == "splice":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[position:position + draw(st.integers(1, 512))] = b"\0" * 16
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_image_bytes())
def test_fuzzed_jpeg_and_png_bytes_decode_or_raise_decode_error(data):
    with tempfile.NamedTemporaryFile(suffix=".img") as handle:
        handle.write(data)
        handle.flush()
        start = time.perf_counter()
        try:
            image = decode_image(handle.name, ResizePolicy(scale=64), timeout=10)
        except DecodeError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 3 and image.pixels.shape[2] == 3
            assert min(image.pixels.shape[:2]) >= 1
        assert time.perf_counter() - start < 10
