import os
from pathlib import Path

import pytest

os.environ.setdefault("SPPFEAT_OFFLINE", "1")  # no test may touch the network

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo_images"
SHARED = ROOT.parent / "shared" / "data"
CALTECH = SHARED / "caltech101" / "101_ObjectCategories"
VOC_SAMPLE = SHARED / "voc2007-sample"


@pytest.fixture(scope="session")
def demo_features(tmp_path_factory):
    """The demo images (6 Caltech 101 classes × 10) extracted once with the default settings."""
    from sppfeat import extract

    out = tmp_path_factory.mktemp("demo") / "demo.h5"
    extract(DEMO, out, quiet=True, workers=1)
    return out
