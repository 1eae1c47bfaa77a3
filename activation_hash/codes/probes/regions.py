"""Region pictures: the input plane coloured by neural code, for networks on 2-D inputs.

At each capture a `resolution` x `resolution` grid over the data's bounding box (plus `margin`
of its extent on each side) is passed through the network; each grid point's code (the captured
layers, as in the run's codes) picks a colour, one colour per distinct code, so every linear
region of a ReLU net / every gate cell of a DLGN is one patch. Colours follow the order in which
codes first appear in the grid's scan order along a golden-ratio hue walk (neighbouring
patches get far-apart hues). On top: the decision boundary (where the argmax changes), the data
points coloured by label and, for a DLGN, its gate lines {x : a . x + c = 0} from
`effective_gating()`. Written atomically as `regions/epoch=NNNN.png` in the run directory.

Metric: `test/regions_on_grid`, the number of distinct codes on the grid (= colours drawn).
`enabled: auto` draws when the input has 2 features and skips otherwise.
"""

from __future__ import annotations

import colorsys
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activation_hash.atomic import atomic_write
from activation_hash.codes.capture import CodeRecorder
from activation_hash.codes.probes import NetworkProbe

GOLDEN = 0.6180339887498949


def region_colours(n: int) -> np.ndarray:
    """n distinct pastel RGB colours (uint8, (n, 3)); consecutive ones far apart in hue."""
    colours, seen, i = [], set(), 0
    while len(colours) < n:
        hue = (i * GOLDEN) % 1.0
        sat = 0.15 + 0.40 * ((i * 0.7548776662) % 1.0)  # other irrational steps: no short cycles
        val = 0.78 + 0.21 * ((i * 0.5698402910) % 1.0)
        rgb = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))
        if rgb not in seen:  # 8-bit rounding could merge two colours; skip the second
            seen.add(rgb)
            colours.append(rgb)
        i += 1
    return np.array(colours, dtype=np.uint8).reshape(n, 3)


def region_image(codes: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 picture with one colour per distinct row of `codes` (H*W, bits), and the
    number of distinct codes."""
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # code id -> rank of its first appearance in scan order
    colours = region_colours(len(first))
    return colours[order[inverse.reshape(-1)]].reshape(*shape, 3), len(first)


def grid_over(points: np.ndarray, resolution: int, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = points.min(0), points.max(0)
    pad = margin * np.maximum(hi - lo, 1e-6)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


@torch.no_grad()
def grid_codes(net: torch.nn.Module, grid: np.ndarray, layers: list[int] | None,
               chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n, bits) bool and predicted classes of the grid points."""
    param = next(net.parameters())
    codes, preds = [], []
    with CodeRecorder(net, layers) as rec:
        for start in range(0, len(grid), chunk):
            x = torch.from_numpy(grid[start:start + chunk]).to(param.device, param.dtype)
            preds.append(net(x).argmax(1).cpu().numpy())
            codes.append(rec.take().cpu().numpy())
    return np.concatenate(codes), np.concatenate(preds)


def _points(data: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = (data.train_batch(n) if hasattr(data, "train_batch") else data.test_batch(n))
    return x.detach().flatten(1).cpu().numpy(), y.detach().cpu().numpy()


def _compute(model: torch.nn.Module, data: Any, layers: list[int] | None, *, enabled: Any = "auto",
             resolution: int = 400, margin: float = 0.1, n_points: int = 1000, gate_lines: bool = True,
             dpi: int = 130) -> dict[str, Any]:
    net = getattr(model, "net", model)
    x, y = _points(data, n_points)
    if x.shape[1] != 2:
        if enabled == "auto":
            return {}
        raise ValueError(f"metrics.regions.enabled={enabled!r}: region pictures need 2-D inputs; this data has "
                         f"{x.shape[1]} features (use auto or false)")
    was_training = net.training
    net.eval()
    try:
        xs, ys, grid = grid_over(x, resolution, margin)
        codes, preds = grid_codes(net, grid, layers)
        lines = _gate_lines(net) if gate_lines else []
    finally:
        net.train(was_training)
    image, n_regions = region_image(codes, (len(ys), len(xs)))
    epoch = int(getattr(data, "epoch", 0))
    title = f"{type(net).__name__}{_variant(net)}, epoch {epoch}: {n_regions} codes on the grid"
    png = draw(image, xs, ys, preds.reshape(len(ys), len(xs)), x, y, lines, title, dpi)
    out_dir = getattr(data, "out_dir", None)
    if out_dir is not None:
        atomic_write(Path(out_dir) / "regions" / f"epoch={epoch:04d}.png", png)
    return {"test/regions_on_grid": n_regions}


def _variant(net: torch.nn.Module) -> str:
    variant = getattr(net, "variant", None)
    return f" ({variant})" if variant else ""


def _gate_lines(net: torch.nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per gating layer (A (n, 2), c (n,)), for networks whose gates are half-spaces."""
    if not hasattr(net, "effective_gating") or getattr(net, "variant", "dlgn") == "dgn":
        return []
    return [(A.cpu().numpy(), c.cpu().numpy()) for A, c in net.effective_gating()]


def draw(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, preds: np.ndarray, x: np.ndarray, y: np.ndarray,
         lines: list[tuple[np.ndarray, np.ndarray]], title: str, dpi: int = 130) -> bytes:
    """The picture as PNG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extent = (xs[0], xs[-1], ys[0], ys[-1])
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=dpi)
    ax.imshow(image, origin="lower", extent=extent, interpolation="nearest", aspect="auto")
    layer_colours = plt.get_cmap("Greys")(np.linspace(0.45, 0.85, max(len(lines), 1)))
    for k, (A, c) in enumerate(lines):
        for (a1, a2), b in zip(A, c):
            if abs(a2) >= abs(a1):  # y = -(a1 x + b) / a2
                ax.plot(xs[[0, -1]], -(a1 * xs[[0, -1]] + b) / a2, color=layer_colours[k], lw=0.6, alpha=0.7)
            elif a1 != 0:
                ax.plot(-(a2 * ys[[0, -1]] + b) / a1, ys[[0, -1]], color=layer_colours[k], lw=0.6, alpha=0.7)
    classes = int(max(preds.max(), y.max())) + 1
    ax.contour(xs, ys, preds, levels=np.arange(classes - 1) + 0.5, colors="black", linewidths=1.8)
    label_colours = plt.get_cmap("tab10")(np.arange(classes) % 10)
    ax.scatter(x[:, 0], x[:, 1], c=label_colours[y], s=9, edgecolors="white", linewidths=0.4, zorder=3)
    ax.set(xlim=extent[:2], ylim=extent[2:], title=title, xlabel="$x_1$", ylabel="$x_2$")
    ax.title.set_fontsize(10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


PROBE = NetworkProbe(name="regions", compute=_compute,
                     options={"enabled": "auto", "resolution": 400, "margin": 0.1, "n_points": 1000,
                              "gate_lines": True, "dpi": 130},
                     description="input plane coloured by neural code (2-D inputs): regions/epoch=NNNN.png")
