"""The VOC 2007 11-point AP against hand-computed cases."""

import numpy as np
import pytest

from sppfeat.classify.metrics import average_precision_11pt, mean_average_precision_11pt, per_class_accuracy


def test_perfect_and_worst_ranking():
    assert average_precision_11pt([3, 2, 1], [1, 1, -1]) == pytest.approx(1.0)
    # one positive ranked last of 4: precision 1/4 at every recall level
    assert average_precision_11pt([4, 3, 2, 1], [-1, -1, -1, 1]) == pytest.approx(0.25)


def test_hand_computed_interleaved_ranking():
    # ranked: +, -, +, -, +   recall .33 .33 .67 .67 1 ; precision 1 .5 .67 .5 .6
    # t=0..0.3 (4 levels): max prec at rec>=t = 1 ; t=0.4..0.6 (3): max(.67,.5,.6)=.667 ; t=0.7..1 (4): .6
    ap = average_precision_11pt([5, 4, 3, 2, 1], [1, -1, 1, -1, 1])
    assert ap == pytest.approx((4 * 1 + 3 * (2 / 3) + 4 * 0.6) / 11)


def test_difficult_examples_are_ignored():
    with_difficult = average_precision_11pt([5, 4, 3, 2], [1, 0, -1, 1])
    without = average_precision_11pt([5, 3, 2], [1, -1, 1])
    assert with_difficult == pytest.approx(without)
    # rank +, -, + : precision 1, .5, .667; recall .5, .5, 1 -> 6 levels at 1, 5 levels at 2/3
    assert without == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11)


def test_no_positive_gives_zero_and_map_averages():
    assert average_precision_11pt([1, 2], [-1, -1]) == 0.0
    scores = np.array([[3, 0], [2, 1], [1, 2]], dtype=float)
    targets = np.array([[1, -1], [1, -1], [-1, 1]])
    assert mean_average_precision_11pt(scores, targets) == pytest.approx(1.0)


def test_per_class_accuracy():
    acc = per_class_accuracy(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 3)
    assert acc[0] == 0.5 and acc[1] == pytest.approx(2 / 3) and np.isnan(acc[2])
