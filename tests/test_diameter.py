"""Stochastic activation diameter: exact segments match hyperplane geometry and code changes,
the grid approximation brackets them, layer selection, conventions, summaries."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from activation_hash.codes import CodeRecorder
from activation_hash.codes.probes.diameter import (Diameters, diameter_summary, exact_diameters, grid_diameters,
                                              random_directions_like, uniform_like)
from activation_hash.models import MLP
from tests.conftest import SHARED_DATASETS


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _codes(model: nn.Module, x: torch.Tensor, layers=None) -> np.ndarray:
    with torch.no_grad(), CodeRecorder(model, layers) as rec:
        model(x)
        return rec.take().numpy()


def _randomize_batch_norm(model: nn.Module, seed: int) -> None:
    g = _gen(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g, dtype=torch.float64))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
            m.weight.data.copy_(1 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g, dtype=torch.float64))


class ConvResidual(nn.Module):
    """Conv + eval BatchNorm + a residual add, one ReLU object reused at two call sites (one
    in place), average pooling, flatten and a linear ReLU layer: affine pieces and ReLUs only."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool, self.flat = nn.AvgPool2d(2), nn.Flatten()
        self.fc, self.leaky, self.out = nn.Linear(4 * 4 * 4, 12), nn.LeakyReLU(0.1), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)) + h)
        return self.out(self.leaky(self.fc(self.flat(self.pool(h)))))


def test_one_hidden_layer_matches_hyperplane_crossings() -> None:
    torch.manual_seed(0)
    model = MLP((1, 6, 6), 10, depth=1, width=40).double()
    x = torch.rand(64, 1, 6, 6, generator=_gen(1), dtype=torch.float64)
    res = exact_diameters(model, x, generator=_gen(2))

    lin = model[1]
    W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    X, D = x.flatten(1).numpy(), res.directions.reshape(len(x), -1)
    t = -(X @ W.T + b) / (D @ W.T)  # where each hyperplane W_j (x + t d) + b_j = 0 is crossed
    hi = np.where(t > 0, t, np.inf).min(1)
    lo = np.where(t < 0, t, -np.inf).max(1)
    assert np.isfinite(hi).all() and np.isfinite(lo).all()
    np.testing.assert_allclose(res.t_hi, hi, rtol=1e-12)
    np.testing.assert_allclose(res.t_lo, lo, rtol=1e-12)
    np.testing.assert_allclose(res.diameter, hi - lo, rtol=1e-12)


def _deep_models() -> list:
    torch.manual_seed(3)
    plain = MLP((1, 6, 6), 10, depth=4, width=24).double()
    bn = MLP((1, 6, 6), 10, depth=3, width=24, batch_norm=True).double()
    _randomize_batch_norm(bn, 4)
    conv = ConvResidual().double()
    _randomize_batch_norm(conv, 5)
    return [pytest.param(plain, (1, 6, 6), id="mlp4"), pytest.param(bn, (1, 6, 6), id="mlp3_bn"),
            pytest.param(conv, (1, 8, 8), id="conv_residual")]


@pytest.mark.parametrize("model, shape", _deep_models())
def test_deep_segment_ends_are_the_first_code_changes(model: nn.Module, shape: tuple[int, ...]) -> None:
    model.train()  # exact_diameters must switch to eval mode itself and switch back
    x = torch.rand(40, *shape, generator=_gen(6), dtype=torch.float64)
    res = exact_diameters(model, x, generator=_gen(7))
    assert model.training and all(m.training for m in model.modules())
    model.eval()

    assert np.isfinite(res.diameter).all() and (res.t_lo < 0).all() and (res.t_hi > 0).all()
    x0 = x.flatten(1).numpy()
    d = res.directions.reshape(len(x), -1)
    eps = 1e-4 * res.diameter[:, None]
    code0 = _codes(model, x)

    def code_at(t: np.ndarray) -> np.ndarray:
        return _codes(model, torch.from_numpy(x0 + t * d).view_as(x))

    for t, same in [(res.t_hi[:, None] - eps, True), (res.t_lo[:, None] + eps, True),
                    (res.t_hi[:, None] + eps, False), (res.t_lo[:, None] - eps, False)]:
        equal = (code_at(t) == code0).all(1)
        assert equal.all() if same else not equal.any()


@pytest.mark.parametrize("model, shape", _deep_models())
def test_grid_brackets_exact_within_two_steps(model: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.rand(30, *shape, generator=_gen(8), dtype=torch.float64)
    step, t_max = 0.01, 4.0
    exact = exact_diameters(model, x, generator=_gen(9), t_max=t_max)
    grid = grid_diameters(model, x, directions=exact.directions, step=step, t_max=t_max)
    inside = (exact.t_hi < t_max) & (exact.t_lo > -t_max)
    assert inside.mean() > 0.8
    assert (exact.diameter >= grid.diameter - 1e-9).all()
    assert (exact.t_hi >= grid.t_hi - 1e-9).all() and (exact.t_lo <= grid.t_lo + 1e-9).all()
    assert (exact.diameter[inside] - grid.diameter[inside] < 2 * step).all()
    # Where the segment sticks out of the window, both methods see exactly the window's edge.
    np.testing.assert_allclose(grid.t_hi[exact.t_hi == t_max], t_max)
    np.testing.assert_allclose(grid.t_lo[exact.t_lo == -t_max], -t_max)


def test_layer_selection_gives_a_superset_segment() -> None:
    torch.manual_seed(10)
    model = MLP((1, 6, 6), 10, depth=3, width=20).double()
    x = torch.rand(50, 1, 6, 6, generator=_gen(11), dtype=torch.float64)
    full = exact_diameters(model, x, generator=_gen(12))
    first = exact_diameters(model, x, generator=_gen(12), layers=[0])
    np.testing.assert_array_equal(first.directions, full.directions)
    assert (first.t_hi >= full.t_hi).all() and (first.t_lo <= full.t_lo).all()
    assert (first.diameter >= full.diameter).all() and (first.diameter > full.diameter).any()

    # The layer-1 region is bounded by layer 1's hyperplanes only.
    lin = model[1]
    W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    t = -(x.flatten(1).numpy() @ W.T + b) / (first.directions.reshape(len(x), -1) @ W.T)
    np.testing.assert_allclose(first.t_hi, np.where(t > 0, t, np.inf).min(1), rtol=1e-12)

    grid = grid_diameters(model, x, directions=first.directions, step=0.01, t_max=20.0, layers=[0])
    assert (first.diameter >= grid.diameter - 1e-9).all() and (first.diameter - grid.diameter < 0.02).all()
    with pytest.raises(ValueError, match="layers"):
        exact_diameters(model, x[:2], layers=[3])


def test_directions_are_unit_norm_and_seeded() -> None:
    x = torch.zeros(20, 3, 5, 5)
    a = random_directions_like(x, _gen(0))
    b = random_directions_like(x, _gen(0))
    c = random_directions_like(x, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_allclose(a.flatten(1).norm(dim=1).numpy(), 1.0, rtol=1e-6)
    assert torch.equal(a, b) and not torch.equal(a, c)

    torch.manual_seed(0)
    model = MLP((3, 5, 5), 4, depth=2, width=8)
    r1 = exact_diameters(model, torch.rand(20, 3, 5, 5), generator=_gen(0))
    np.testing.assert_array_equal(r1.directions, a.numpy())


def test_uniform_like_is_seeded_unit_interval() -> None:
    x = torch.zeros(100, 1, 28, 28)
    u = uniform_like(x, _gen(3))
    assert u.shape == x.shape and u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    assert torch.equal(u, uniform_like(x, _gen(3)))


def test_boundary_unit_ends_the_segment_at_x() -> None:
    # x = 0 and unit 0 has no bias: x sits on unit 0's hyperplane, unit 0 is off there (z > 0 is on).
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, -2.0, 3.0]))
    x = torch.zeros(2, 2, dtype=torch.float64)
    d = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    res = exact_diameters(model, x, directions=d)
    # Along +e1 unit 0 turns on immediately: t_hi = 0; behind, unit 2 (x1 + x2 + 3) turns off at -3.
    np.testing.assert_array_equal(res.t_hi, [0.0, 3.0])
    np.testing.assert_array_equal(res.t_lo, [-3.0, 0.0])
    np.testing.assert_array_equal(res.diameter, [3.0, 3.0])


def test_no_crossing_gives_inf_or_the_clip_window() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[0].weight[:, 1] = 0.0  # the network ignores the second coordinate
    x = torch.rand(4, 2, generator=_gen(0), dtype=torch.float64)
    d = torch.tensor([[0.0, 1.0]] * 4, dtype=torch.float64)
    res = exact_diameters(model, x, directions=d)
    assert np.isposinf(res.t_hi).all() and np.isneginf(res.t_lo).all() and np.isposinf(res.diameter).all()
    clipped = exact_diameters(model, x, directions=d, t_max=5.0)
    np.testing.assert_array_equal(clipped.diameter, 10.0)
    grid = grid_diameters(model, x, directions=d, t_max=5.0)
    np.testing.assert_allclose(grid.diameter, 10.0)


def test_non_affine_modules_warn_and_batches_agree() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.rand(10, 1, 4, 4, generator=_gen(0))
    with pytest.warns(UserWarning, match="Tanh"):
        exact_diameters(model, x)
    plain = MLP((1, 4, 4), 2, depth=2, width=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = exact_diameters(plain, x, generator=_gen(1))
    chunked = exact_diameters(plain, x, directions=whole.directions, batch_size=3)
    np.testing.assert_allclose(chunked.diameter, whole.diameter, rtol=1e-5)  # float32 matmul order


def test_summary_statistics_and_histogram() -> None:
    values = np.array([0.5, 1.0, 2.0, 4.0, 8.0, np.inf])
    s = diameter_summary(Diameters(t_lo=-values / 2, t_hi=values / 2, diameter=values, directions=np.zeros((6, 1))),
                         bins=4)
    assert s["n"] == 6 and s["n_infinite"] == 1
    assert s["mean"] == pytest.approx(3.1) and s["median"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(np.std(values[:5]))
    np.testing.assert_allclose(s["hist_edges"], [0.5, 1.0, 2.0, 4.0, 8.0])
    assert s["hist_counts"] == [1, 1, 1, 2] and s["q05"] <= s["q25"] <= s["q75"] <= s["q95"]
    linear = diameter_summary(values, bins=[0, 5, 10])
    assert linear["hist_counts"] == [4, 1]
    assert diameter_summary([np.inf]) == {"n": 1, "n_infinite": 1}


def _mnist_test_images(n: int) -> torch.Tensor | None:
    path = SHARED_DATASETS / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        return None
    with gzip.open(path, "rb") as f:
        pixels = np.frombuffer(f.read(), dtype=np.uint8, offset=16)[: n * 784]
    return torch.from_numpy(pixels.reshape(n, 1, 28, 28).astype(np.float32) / 255.0)


def test_real_mnist_grid_brackets_exact_float32() -> None:
    x = _mnist_test_images(60)
    if x is None:
        pytest.skip(f"MNIST test images not found under {SHARED_DATASETS}")
    torch.manual_seed(0)
    model = MLP((1, 28, 28), 10, depth=1, width=50)
    exact = exact_diameters(model, x, generator=_gen(0), t_max=5.0)
    grid = grid_diameters(model, x, directions=exact.directions)
    random = exact_diameters(model, uniform_like(x, _gen(1)), generator=_gen(0), t_max=5.0)
    inside = exact.diameter < 10.0
    assert inside.all()
    assert (exact.diameter >= grid.diameter - 1e-6).all() and (exact.diameter - grid.diameter < 0.1 + 1e-6).all()
    assert np.isfinite(random.diameter).all() and (random.diameter > 0).all()


def test_diameter_probe_matches_diameter_metrics() -> None:
    """The network probe is the same computation as the callback's diameter_metrics."""
    from activation_hash.codes.probes.diameter import diameter_metrics
    from activation_hash.codes.probes import probes

    torch.manual_seed(0)
    model = MLP(input_shape=(1, 4, 4), num_classes=3, width=8, depth=2).eval()
    x = torch.rand(20, 1, 4, 4)

    class Data:
        def test_batch(self, n: int):
            return x[:n], torch.zeros(n, dtype=torch.long)

    probe = probes()["diameter"]
    opts = {**probe.options, "n_samples": 10, "method": "both"}
    got = probe.compute(model, Data(), None, **opts)
    assert got == diameter_metrics(model, x, None, opts)
    assert any(k.startswith("test/grid_diameter_") for k in got) and any(k.startswith("test/random_diameter_") for k in got)
    with pytest.raises(ValueError, match="metrics.diameter.method='bogus'"):
        probe.compute(model, Data(), None, **{**opts, "method": "bogus"})
