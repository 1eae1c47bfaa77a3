"""Capture schedules and the MLP's width conventions."""

from __future__ import annotations

import pytest
from torch import nn

from activation_hash.codes import capture_epochs
from activation_hash.models import MLP, hidden_widths


@pytest.mark.parametrize("spec, max_epochs, expected", [
    ([0, 3, 1, 3], 5, [0, 1, 3]), (2, 5, [2]), ("all", 3, [0, 1, 2, 3]), ("last", 7, [7]),
    ("log:4", 1000, [0, 1, 10, 100, 1000]), ("log:3", 4, [0, 1, 2, 4]), ("log", 0, [0]),
])
def test_capture_epochs(spec: object, max_epochs: int, expected: list[int]) -> None:
    assert capture_epochs(spec, max_epochs) == expected


@pytest.mark.parametrize("spec, match", [
    ([0, 30], r"codes.epochs=\[0, 30\] has epoch\(s\) \[30\] outside 0..trainer.max_epochs=20"),
    ("sometimes", "not a capture schedule"), ("log:0", "N must be >= 1"), ([1.5], "not a capture schedule"),
])
def test_capture_epochs_errors(spec: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        capture_epochs(spec, 20)


def test_widths_conventions() -> None:
    assert hidden_widths(5, 200) == [200] * 5
    assert hidden_widths(5, 200, split_width=True) == [40] * 5        # the authors' width // depth
    assert hidden_widths(3, 1, widths=[4, 2, 9]) == [4, 2, 9]
    linears = [m for m in MLP((1, 8, 8), 10, depth=2, widths=[7, 3]) if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 7), (7, 3), (3, 10)]
    bn = MLP((4,), 2, depth=2, width=3, batch_norm=True)
    kinds = [type(m).__name__ for m in bn]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=1, width=0), r"model.width=0: must be >= 1"),
    (dict(depth=0, width=5), r"model.depth=0"),
    (dict(depth=5, width=3, split_width=True), r"model.width=3 split over model.depth=5"),
    (dict(depth=1, width=5, widths=[3, 0]), r"model.widths=\[3, 0\]"),
])
def test_bad_widths(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        hidden_widths(**kwargs)
