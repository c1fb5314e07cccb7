"""Shared test data, settings and checks."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SPPFEAT_OFFLINE", "1")  # no test may touch the network

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo_images"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared" / "data"
CALTECH = SHARED / "caltech101" / "101_ObjectCategories"
VOC_SAMPLE = SHARED / "voc2007-sample"
SUBPROCESS_TIMEOUT = 300  # seconds; every command a test starts ends by then

# Small settings keep a few hundred images to seconds: vectors of 1280 · (4 + 1) dims.
FAST_ARGS = ["--scale", "64", "--levels", "2,1"]


def fast_config(**changes):
    from sppfeat import ExtractionConfig

    return ExtractionConfig(**{"scales": (64,), "levels": (2, 1), **changes})


def one_process(**changes):
    """A Runtime with one worker process (most tests: few images, two cores shared with pytest)."""
    from sppfeat import Runtime

    return Runtime(**{"workers": 1, **changes})


def voc_xml(filename, objects):
    """A VOC devkit annotation: objects are (box 0-based half-open, class, difficult), written 1-based inclusive."""
    body = "".join(f"<object><name>{c}</name><difficult>{int(d)}</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                   f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                   for (x1, y1, x2, y2), c, d in objects)
    return f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>{body}</annotation>"


def sppfeat_command(*args) -> list[str]:
    return [sys.executable, "-m", "sppfeat", *map(str, args)]


def run_sppfeat(*args, timeout: float = SUBPROCESS_TIMEOUT, **options) -> subprocess.CompletedProcess:
    """`python -m sppfeat ARGS` to the end, output captured as text."""
    return subprocess.run(sppfeat_command(*args), capture_output=True, text=True, timeout=timeout, **options)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two N×D arrays."""
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_same_rows(path, reference_path, min_cosine: float = 0.9999) -> None:
    """Two feature files hold the same images in the same order with the same vectors (batching may
    change the last bits) and the same skipped files."""
    from sppfeat.storage.feature_file import open_features

    a, b = open_features(path), open_features(reference_path)
    assert a.paths == b.paths and a.labels.tolist() == b.labels.tolist()
    assert a.image_sizes.tolist() == b.image_sizes.tolist() and a.skipped == b.skipped
    assert a.class_names == b.class_names and a.dim == b.dim
    assert cosine(a.read_features(), b.read_features()).min() >= min_cosine



def damage_chunk(path, chunk: int) -> None:
    """XOR bytes 100..300 of a stored chunk of a feature file's `features` (a damaged disk block)."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f["features"].id.get_chunk_info(chunk).byte_offset
    with open(path, "r+b") as file:
        file.seek(offset + 100)
        block = bytes(b ^ 0xFF for b in file.read(200))
        file.seek(offset + 100)
        file.write(block)

@pytest.fixture(scope="session")
def demo_features(tmp_path_factory):
    """The demo images (6 Caltech 101 classes × 10) extracted once with the default settings."""
    from sppfeat import extract

    out = tmp_path_factory.mktemp("demo") / "demo.h5"
    extract(DEMO, out, runtime=one_process(), quiet=True)
    return out


def interrupt_at_call(monkeypatch, module, name: str, n: int, signum: int):
    """Make the n-th call of module.name raise ExtractionInterrupted(signum), as if the run were stopped
    by that signal there; returns the original, to put back for the resumed run."""
    from sppfeat.features.interrupts import ExtractionInterrupted

    real, calls = getattr(module, name), []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise ExtractionInterrupted(signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, stopping)
    return real
