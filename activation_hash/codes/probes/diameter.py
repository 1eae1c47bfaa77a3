"""Stochastic activation diameter: how far a random line through x stays in x's linear region.

Definition (He et al. 2021, Sec. 5.1): draw a direction d uniformly on the unit sphere of the
input space; the line x + t·d meets x's region -- the set of inputs with the same neural code,
a convex polytope -- in one segment [t_lo, t_hi] with t_lo <= 0 <= t_hi; since |d| = 1 its length
t_hi - t_lo is the stochastic diameter. The paper averages it over 600 MNIST test samples and
shows histograms.

Two ways to compute it, on the same directions so they can be compared:

- `exact_diameters`: one forward pass with forward-mode AD gives, for every ReLU-like unit, its
  pre-activation z0 at x and its directional derivative dz along d. Inside x's region the
  network is affine in t, so each pre-activation is exactly z0 + t·dz there and the segment
  ends at the nearest sign change.
- `grid_diameters`: the authors' approximation, codes evaluated on a grid of t (step 0.05 on
  [-5, 5]); the diameter is the span of the run of grid points around t = 0 with x's code.

Why the exact method is exact across layers. Extend every unit's pre-activation affinely as
z0 + t·dz and let T be the first t > 0 at which any of these extensions changes sign. On [0, T)
no unit of layer 1 changes state, so each ReLU-like module acts there as a fixed linear map
(identity, zero, or the leaky slope) and layer 2's pre-activations are affine in t, equal to
their extensions; by induction over the forward order the same holds for every layer. So the
code is constant on [0, T), and at T the crossing unit's true pre-activation (equal to its
extension by continuity) reaches 0 and changes sign: T is exactly the first code change.
Beyond T later layers' slopes do change, but the segment has ended, so they are never needed.
Likewise for t < 0. The region is convex (fixing the code makes every pre-activation an affine
function of the input, and the region is an intersection of half-spaces), so the line never
re-enters it.

This holds for networks built of affine maps (Linear, Conv, eval-mode BatchNorm, average pooling,
flatten, residual additions, dropout in eval mode) and ReLU-like modules
(`activation_hash.codes.capture.RELU_LIKE`). Other nonlinearities (max-pooling, tanh, ReLU6,
LayerNorm, functional `F.relu` calls, which hooks cannot see) make the network non-affine
inside a region; the result is then the first crossing of the first-order extensions, not the
exact diameter (`exact_diameters` warns about such modules when it can see them).

Conventions.
- On/off: a unit is on when its pre-activation is > 0, as in `CodeRecorder`. A unit exactly at
  z0 = 0 is off, so x lies on the boundary of the off-side region, which is still a full
  polytope: the segment ends at x on the side where the unit turns on (t_hi = 0 if dz > 0,
  t_lo = 0 if dz < 0), and the other side is measured normally. Units with dz = 0 never cross.
  The segment is reported as its closure (a unit that is on at x is off at its crossing point
  itself; the length is the same).
- Unbounded sides: with `t_max=None` a side no unit crosses gives t_hi = +inf (t_lo = -inf) and
  diameter = inf. With `t_max` set both ends are clipped to [-t_max, t_max], which is what the
  authors' grid on [-5, 5] can see.
- Grid: diameter = (points in the run - 1)·step, the distance between the outermost grid points
  of the run. The exact segment contains them and ends before the next grid point on each side,
  so 0 <= exact - grid < 2·step whenever the segment fits inside [-t_max, t_max].

Random inputs (the paper's Fig. 2e): draw x with `uniform_like(x_real, generator)` (every pixel
i.i.d. U(0, 1), same shape as the real inputs) and pass it to either function like real data.

The network probe ``diameter`` (``metrics.diameter.enabled=true``) runs `diameter_metrics` at a capture.

Configured by `metrics.diameter` (disabled by default; the `diameter` study enables it):
    n_samples  how many test samples (the paper: 600)
    method     exact (forward-mode AD, above) | grid | both
    t_max      clip the exact segment to |t| <= t_max (null: unbounded)
    grid_step, grid_t_max   the authors' grid approximation (0.05 on [-5, 5])
    random     also on i.i.d. U(0,1) inputs of the test samples' shape
    seed       seeds the directions and the random inputs (same across captures and widths)
Results go in the test row as `test/diameter_*`, `test/grid_diameter_*`,
`test/random_diameter_*` (mean, median, std, quantiles, histogram counts and edges).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from activation_hash.codes.capture import RELU_LIKE, CodeRecorder, relu_like_modules
from activation_hash.codes.probes import NetworkProbe
from activation_hash.data.random_inputs import sample_indices

# Modules that are not affine and not units of the code: with them the network is not affine
# inside a region, so `exact_diameters` is no longer exact.
_NOT_AFFINE: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.GELU,
    nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LocalResponseNorm,
)


@dataclass(frozen=True)
class Diameters:
    """Per-sample segment ends along each direction and the diameters t_hi - t_lo."""

    t_lo: np.ndarray
    t_hi: np.ndarray
    diameter: np.ndarray
    directions: np.ndarray  # (n, *input_shape), unit norm per sample


def random_directions_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Directions uniform on the unit sphere, one per sample of x, with x's shape, dtype and device.

    A normalized standard Gaussian is uniform on the sphere. Drawn on the CPU in float64 from
    `generator` (None: a generator seeded 0), so a seed gives the same directions on any device.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    d = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    d = d / d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
    return d.to(device=x.device, dtype=x.dtype)


def uniform_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random inputs like the paper's: every entry i.i.d. U(0, 1), with x's shape, dtype and device."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.rand(x.shape, generator=generator, dtype=torch.float64).to(device=x.device, dtype=x.dtype)


def _device_dtype(model: nn.Module, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (x.device, x.dtype)


class _EvalMode:
    """Put every submodule in eval mode; restore each one's own mode on exit."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.modes = {m: m.training for m in model.modules()}

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for module, training in self.modes.items():
            module.training = training


def _prepare(model: nn.Module, x: torch.Tensor, directions: torch.Tensor | np.ndarray | None,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not relu_like_modules(model):
        raise ValueError(f"{type(model).__name__} has no ReLU-like modules "
                         f"({', '.join(t.__name__ for t in RELU_LIKE)}): it has no neural code")
    device, dtype = _device_dtype(model, x)
    x = torch.as_tensor(x).to(device=device, dtype=dtype)
    if directions is None:
        d = random_directions_like(x, generator)
    else:
        d = torch.as_tensor(directions).to(device=device, dtype=dtype)
        if d.shape != x.shape:
            raise ValueError(f"directions have shape {tuple(d.shape)}, x has {tuple(x.shape)}; "
                             "need one direction per sample, shaped like the sample")
    return x, d


def _check_layers(layers: Sequence[int] | None, n_calls: int) -> None:
    if layers is not None and (not layers or min(layers) < 0 or max(layers) >= n_calls):
        raise ValueError(f"layers={list(layers)}: need 0-based ReLU call-site indices in 0..{n_calls - 1}")


@torch.no_grad()
def exact_diameters(model: nn.Module, x: torch.Tensor, *,
                    directions: torch.Tensor | np.ndarray | None = None,
                    generator: torch.Generator | None = None, t_max: float | None = None,
                    layers: Sequence[int] | None = None, batch_size: int = 512) -> Diameters:
    """Exact segment [t_lo, t_hi] of x's region along x + t·d, for a batch x of shape (n, ...).

    `directions` (n, ...) are used as given (normalize them yourself); None draws unit directions
    with `random_directions_like(x, generator)`. `layers` (0-based ReLU call sites, as
    `CodeRecorder` takes; None = all) selects the units whose code defines the region. The model
    runs in eval mode on its own device and dtype, `batch_size` samples at a time, and gets its
    modes back afterwards. See the module docstring for the conventions (boundary, inf, t_max).
    """
    odd = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _NOT_AFFINE)})
    if odd:
        warnings.warn(f"{type(model).__name__} contains {', '.join(odd)}: not affine inside a linear "
                      "region, so these diameters are first-order estimates, not exact", stacklevel=2)
    x, d = _prepare(model, x, directions, generator)
    selected = None if layers is None else set(layers)
    state: dict[str, torch.Tensor | int] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        call = state["calls"]
        state["calls"] = call + 1
        if selected is not None and call not in selected:
            return
        primal, tangent = fwAD.unpack_dual(args[0])
        if tangent is None:  # does not depend on the input: constant along the line
            return
        z0, dz = primal.flatten(1), tangent.flatten(1)
        on = z0 > 0
        # An on unit turns off where z0 + t·dz falls to 0, an off unit (z0 <= 0) turns on where it
        # rises above 0; either way at distance |z0 / dz|, ahead (t > 0) or behind (t < 0).
        ahead = torch.where(on, dz < 0, dz > 0)
        behind = torch.where(on, dz > 0, dz < 0)
        dist = (z0 / dz).abs()
        inf = torch.full_like(dist, math.inf)
        state["hi"] = torch.minimum(state["hi"], torch.where(ahead, dist, inf).amin(1))
        state["lo"] = torch.minimum(state["lo"], torch.where(behind, dist, inf).amin(1))

    handles = [m.register_forward_pre_hook(hook) for _, m in relu_like_modules(model)]
    t_lo, t_hi = [], []
    try:
        with _EvalMode(model):
            for start in range(0, len(x), batch_size):
                xs, ds = x[start:start + batch_size], d[start:start + batch_size]
                state.update(calls=0, hi=xs.new_full((len(xs),), math.inf), lo=xs.new_full((len(xs),), math.inf))
                with fwAD.dual_level():
                    model(fwAD.make_dual(xs, ds))
                _check_layers(layers, state["calls"])
                t_hi.append(state["hi"].cpu())
                t_lo.append(-state["lo"].cpu())
    finally:
        for handle in handles:
            handle.remove()
    lo, hi = torch.cat(t_lo).double().numpy(), torch.cat(t_hi).double().numpy()
    if t_max is not None:
        lo, hi = np.maximum(lo, -t_max), np.minimum(hi, t_max)
    return Diameters(t_lo=lo + 0.0, t_hi=hi, diameter=hi - lo, directions=d.cpu().numpy())


@torch.no_grad()
def grid_diameters(model: nn.Module, x: torch.Tensor, *, directions: torch.Tensor | np.ndarray,
                   step: float = 0.05, t_max: float = 5.0, layers: Sequence[int] | None = None,
                   max_rows: int = 16384) -> Diameters:
    """The authors' grid approximation on the same directions as `exact_diameters`.

    Codes are evaluated at t = k·step for k = -K..K, K = round(t_max / step); the run of grid
    points around t = 0 whose code equals x's gives t_lo, t_hi (its outermost points) and the
    diameter (points in the run - 1)·step. `max_rows` bounds the forward batch (samples × grid).
    """
    x, d = _prepare(model, x, directions, None)
    k_max = round(t_max / step)
    ts = torch.arange(-k_max, k_max + 1, device=x.device, dtype=x.dtype) * step
    per_chunk = max(1, max_rows // len(ts))
    k_lo, k_hi = [], []
    with _EvalMode(model), CodeRecorder(model, layers) as rec:
        for start in range(0, len(x), per_chunk):
            xs, ds = x[start:start + per_chunk], d[start:start + per_chunk]
            points = xs.unsqueeze(1) + ts.view(1, -1, *([1] * (xs.dim() - 1))) * ds.unsqueeze(1)
            model(points.flatten(0, 1))
            _check_layers(layers, len(rec.layer_units))
            bits = rec.take().view(len(xs), len(ts), -1)
            same = (bits == bits[:, k_max:k_max + 1]).all(dim=2)
            # Length of the all-True prefix walking away from t = 0 on each side.
            k_hi.append(same[:, k_max:].int().cumprod(1).sum(1) - 1)
            k_lo.append(same[:, :k_max + 1].flip(1).int().cumprod(1).sum(1) - 1)
    lo = -torch.cat(k_lo).cpu().double().numpy() * step
    hi = torch.cat(k_hi).cpu().double().numpy() * step
    return Diameters(t_lo=lo + 0.0, t_hi=hi, diameter=hi - lo, directions=d.cpu().numpy())


def diameter_summary(diameters: Diameters | np.ndarray | Sequence[float],
                     bins: int | Sequence[float] | np.ndarray = 30, log_bins: bool = True,
                     quantiles: Sequence[float] = (0.05, 0.25, 0.75, 0.95)) -> dict[str, object]:
    """Mean, std, median, quantiles and a histogram of diameters, as JSON-ready Python values.

    Statistics are over the finite diameters; `n_infinite` counts the others (sides no unit
    crosses with t_max=None). An int `bins` gives that many log-spaced bins between the smallest
    positive and the largest finite diameter (linear bins if `log_bins` is False or there is no
    spread); explicit edges are used as given. As in `np.histogram`, values outside the edges
    are not counted (with log bins that is only diameters equal to 0).
    """
    values = np.asarray(diameters.diameter if isinstance(diameters, Diameters) else diameters, dtype=np.float64)
    finite = values[np.isfinite(values)]
    summary: dict[str, object] = {"n": int(values.size), "n_infinite": int(values.size - finite.size)}
    if finite.size == 0:
        return summary
    summary.update(mean=float(finite.mean()), std=float(finite.std()), median=float(np.median(finite)),
                   min=float(finite.min()), max=float(finite.max()))
    summary.update({f"q{round(100 * q):02d}": float(np.quantile(finite, q)) for q in quantiles})
    positive = finite[finite > 0]
    if isinstance(bins, int) and log_bins and positive.size and positive.min() < finite.max():
        edges = np.geomspace(positive.min(), finite.max(), bins + 1)
    else:
        edges = bins if isinstance(bins, int) else np.asarray(bins, dtype=np.float64)
    counts, edges = np.histogram(finite, bins=edges)
    summary.update(hist_counts=counts.tolist(), hist_edges=edges.tolist())
    return summary


METHODS = ("exact", "grid", "both")


def diameter_metrics(model: nn.Module, x_test: torch.Tensor, layers: Sequence[int] | None,
                     cfg: Mapping[str, Any]) -> dict[str, Any]:
    method = cfg.get("method", "exact")
    if method not in METHODS:
        raise ValueError(f"metrics.diameter.method={method!r}: allowed values are {', '.join(METHODS)}")
    generator = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    x = x_test[: int(cfg.get("n_samples", 600))]
    inputs = {"": x}
    if cfg.get("random", True):
        inputs["random_"] = uniform_like(x, generator).to(x.device)
    out: dict[str, Any] = {}
    for prefix, xs in inputs.items():
        directions = random_directions_like(xs, generator)
        if method in ("exact", "both"):
            d = exact_diameters(model, xs, directions=directions, t_max=cfg.get("t_max"), layers=layers)
            out.update(_prefixed(f"test/{prefix}diameter_", diameter_summary(d)))
        if method in ("grid", "both"):
            d = grid_diameters(model, xs, directions=directions, step=float(cfg.get("grid_step", 0.05)),
                               t_max=float(cfg.get("grid_t_max", 5.0)), layers=layers)
            out.update(_prefixed(f"test/{prefix}grid_diameter_", diameter_summary(d)))
    return out


def _prefixed(prefix: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in summary.items()}


OPTIONS = {"n_samples": 600, "method": "exact", "t_max": None, "grid_step": 0.05, "grid_t_max": 5.0,
           "random": True, "seed": 0, "sample": "first"}


def _compute(model: Any, data: Any, layers: Any, **options: Any) -> dict[str, Any]:
    if options.get("method", "exact") not in METHODS:
        raise ValueError(f"metrics.diameter.method={options['method']!r}: allowed values are {', '.join(METHODS)}")
    n, how = int(options.get("n_samples", OPTIONS["n_samples"])), options.get("sample", OPTIONS["sample"])
    x, _ = data.test_batch(n if how == "first" else 2**62)  # sample=random: from the whole test set
    x = x[sample_indices(len(x), n, how, int(options.get("seed", 0)))]  # first n, or n at random (seeded)
    return diameter_metrics(model, x, layers, {**OPTIONS, **options})


PROBE = NetworkProbe(name="diameter", compute=_compute, options=OPTIONS,
                     description="stochastic activation diameter (He et al. 2021, Sec. 5.1)")
