"""The text summaries of sppfeat/report.py: what `sppfeat info` says about a regions file's combine."""

import re

import pytest

from conftest import DEMO, fast_config
from sppfeat import Runtime, regions
from sppfeat.report import describe_file


def combine_line(path) -> str:
    return re.search(r"^\s+combine\s+(.*)$", describe_file(path), re.M).group(1)


@pytest.fixture(scope="module")
def one_box(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boxes")
    (folder / "b.csv").write_text("path,x1,y1,x2,y2\npizza/image_0011.jpg,0,0,50,50\n")
    return folder


@pytest.mark.parametrize("scales, shown", [
    ((64,), "max (one scale: best and max are the same)"),  # asked for best: recorded as max, said so
    ((64, 96), "best"),
])
def test_info_says_best_and_max_agree_for_a_one_scale_regions_file(one_box, scales, shown):
    out = one_box / f"r{len(scales)}.h5"
    regions(DEMO, one_box / "b.csv", out, fast_config(scales=scales, combine="best"), Runtime(workers=0), quiet=True)
    assert combine_line(out) == shown


def test_info_of_an_image_file_does_not_mention_best(demo_features):
    assert combine_line(demo_features) == "max"


def test_info_writes_lists_as_the_command_line_does(demo_features):
    text = describe_file(demo_features)
    assert re.search(r"^\s+levels\s+6,3,2,1$", text, re.M) and re.search(r"^\s+scale\s+224$", text, re.M), text
    assert "[" not in text
