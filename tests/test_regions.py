"""Region pictures: one colour per distinct code on the grid, written as regions/epoch=NNNN.png."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from activation_hash.codes.probes import probes
from activation_hash.codes.probes.regions import grid_codes, grid_over, region_colours, region_image
from activation_hash.models.dlgn import DLGN
from activation_hash.models.mlp import MLP


def _data(x, y, out_dir=None, epoch=3):
    return types.SimpleNamespace(test_batch=lambda n: (x[:n], y[:n]), out_dir=out_dir, epoch=epoch)


def test_colours_are_distinct():
    colours = region_colours(5000)
    assert len(np.unique(colours, axis=0)) == 5000


@pytest.mark.parametrize("make", [lambda: MLP((2,), 3, depth=2, width=6),
                                  lambda: DLGN((2,), 3, depth=3, width=5, gating_bias=True)])
def test_colours_drawn_equal_distinct_codes_on_grid(make):
    torch.manual_seed(0)
    net = make()
    points = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    xs, ys, grid = grid_over(points, 120, 0.1)
    codes, _ = grid_codes(net, grid, None)
    image, n = region_image(codes, (len(ys), len(xs)))
    n_codes = len(np.unique(codes, axis=0))
    assert n == n_codes > 3
    assert len(np.unique(image.reshape(-1, 3), axis=0)) == n_codes
    # same colour <=> same code
    flat = image.reshape(-1, 3)
    for i in np.random.default_rng(1).integers(0, len(grid), 30):
        same = (flat == flat[i]).all(1)
        assert (codes[same] == codes[i]).all() and same.sum() == (codes == codes[i]).all(1).sum()


def test_probe_writes_png_and_counts_codes(tmp_path):
    torch.manual_seed(0)
    net = DLGN((2,), 2, depth=2, width=4, gating_bias=True)
    x = torch.randn(80, 2)
    y = (x[:, 0] > 0).long()
    probe = probes()["regions"]
    out = probe.compute(net, _data(x, y, tmp_path, 3), None, **{**probe.options, "resolution": 100})
    png = tmp_path / "regions" / "epoch=0003.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    xs, ys, grid = grid_over(x.numpy(), 100, probe.options["margin"])
    assert out["test/regions_on_grid"] == len(np.unique(grid_codes(net, grid, None)[0], axis=0))


def test_auto_skips_inputs_that_are_not_2d():
    net = MLP((1, 2, 2), 2, width=3)
    x, y = torch.rand(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)
    probe = probes()["regions"]
    assert probe.compute(net, _data(x, y), None, enabled="auto") == {}
    with pytest.raises(ValueError, match="metrics.regions.enabled=True"):
        probe.compute(net, _data(x, y), None, enabled=True)


def test_a_run_on_2d_data_draws_the_region_picture_at_every_capture(tiny_cfg) -> None:
    from pathlib import Path
    from activation_hash.run import run
    result = run(tiny_cfg("data=moons", "~data.train_size", "~data.test_size", "codes.epochs=[0,2]"))
    out = Path(result["run_dir"])
    assert sorted(p.name for p in (out / "regions").glob("*.png")) == ["epoch=0000.png", "epoch=0002.png"]
    assert result["test/regions_on_grid"] >= 1
