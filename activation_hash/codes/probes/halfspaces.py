"""Half-space features of a DLGN: its gates' effective weights, saved, drawn and measured.

    python -m activation_hash model=dlgn data=mnist data.train_size=5000 model.depth=2 model.width=50
    # -> RUN/halfspaces/epoch=NNNN.npz (+ .png for image data), test/gate_* metrics per layer

Every gate i of gating layer l of a DLGN / DLGN-SF is the half-space {x : A_l[i] . x + c_l[i] > 0}
(`model.effective_gating()`: A_l = W_l...W_1, or W_l for dlgn_sf; batch norm folded in). At each
capture this probe

- saves A_l and c_l of every layer to `halfspaces/epoch=NNNN.npz` (keys `A_l1`, `c_l1`, ...,
  float32, plus `epoch`, `variant`, `input_shape`), atomically;
- for image data (input_shape (C, H, W) with C in 1, 3, or (H, W)) draws the first `max_gates`
  gates of every layer as H x W images, one grid per layer (`halfspaces/epoch=NNNN.png`;
  grey images: blue < 0 < red on a symmetric per-gate scale; RGB: each gate min-max scaled);
- returns per layer l (1-based, in forward order, as `codes.layers`) the gate geometry of
  `activation_hash.metrics.gate_geometry`: `test/gate_abs_cos_mean_l{l}`, `test/gate_abs_cos_p90_l{l}`
  (pairwise |cos| between the gates' effective weight vectors) and `test/gate_cluster_score_l{l}`
  (mean over gates of the largest |cos| to another gate of the layer). Every gating layer is
  measured, whichever layers `codes.layers` captures.

`metrics.halfspaces.enabled: auto` runs for networks with half-space gates (`effective_gating()`,
i.e. model=dlgn with variant dlgn or dlgn_sf) and skips every other network (ReLU MLPs, dgn).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from activation_hash.atomic import atomic_write
from activation_hash.codes.probes import NetworkProbe
from activation_hash.metrics.gate_geometry import gate_geometry

OPTIONS = {"enabled": "auto", "save": True, "images": "auto", "max_gates": 16, "columns": 8, "dpi": 110}


def has_half_spaces(net: Any) -> bool:
    return callable(getattr(net, "effective_gating", None)) and getattr(net, "variant", "dlgn") != "dgn"


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """(H, W) or (H, W, 3) to draw one gate's weights, or None when the input is not an image."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        return shape
    if len(shape) == 3 and shape[0] == 1:
        return shape[1:]
    if len(shape) == 3 and shape[0] == 3:
        return shape[1:] + (3,)
    return None


def metrics(weights: list[np.ndarray]) -> dict[str, float | None]:
    """The test-row metrics of the gate weights A_1..A_L (NaN written as None)."""
    out: dict[str, float | None] = {}
    for l, A in enumerate(weights, start=1):
        for name, value in gate_geometry(A).items():
            out[f"test/gate_{name}_l{l}"] = None if math.isnan(value) else value
    return out


def _check(enabled: Any, save: Any, images: Any, max_gates: Any, columns: Any, unknown: dict) -> None:
    if unknown:
        raise ValueError(f"metrics.halfspaces: unknown option(s) {sorted(unknown)}; allowed: {sorted(OPTIONS)}")
    if enabled not in ("auto", True, False):
        raise ValueError(f"metrics.halfspaces.enabled={enabled!r}: allowed auto, true, false")
    if images not in ("auto", True, False):
        raise ValueError(f"metrics.halfspaces.images={images!r}: allowed auto, true, false")
    if save not in (True, False):
        raise ValueError(f"metrics.halfspaces.save={save!r}: allowed true, false")
    for key, value in (("max_gates", max_gates), ("columns", columns)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"metrics.halfspaces.{key}={value!r}: must be an int >= 1")


def _compute(model: Any, data: Any, layers: list[int] | None, *, enabled: Any = "auto", save: bool = True,
             images: Any = "auto", max_gates: int = 16, columns: int = 8, dpi: int = 110,
             **unknown: Any) -> dict[str, Any]:
    _check(enabled, save, images, max_gates, columns, unknown)
    net = getattr(model, "net", model)
    if not has_half_spaces(net):
        if enabled == "auto":
            return {}
        raise ValueError(f"metrics.halfspaces.enabled={enabled!r}: {type(net).__name__}"
                         f"{' (variant dgn)' if hasattr(net, 'effective_gating') else ''} has no half-space gates; "
                         "use model=dlgn with model.variant=dlgn or dlgn_sf (or enabled=auto)")
    gating = [(A.detach().cpu().numpy().astype(np.float32), c.detach().cpu().numpy().astype(np.float32))
              for A, c in net.effective_gating()]
    epoch = int(getattr(data, "epoch", 0))
    input_shape = tuple(getattr(data, "input_shape", ()) or ())
    out_dir = getattr(data, "out_dir", None)
    if out_dir is not None:
        folder = Path(out_dir) / "halfspaces"
        variant = str(getattr(net, "variant", ""))
        if save:
            arrays = {f"{k}_l{l}": v for l, (A, c) in enumerate(gating, start=1) for k, v in (("A", A), ("c", c))}
            atomic_write(folder / f"epoch={epoch:04d}.npz", lambda f: np.savez_compressed(
                f, epoch=epoch, variant=variant, input_shape=np.asarray(input_shape, dtype=np.int64), **arrays))
        shape = image_shape(input_shape)
        if images is True and shape is None:
            raise ValueError(f"metrics.halfspaces.images=true: input_shape {input_shape} is not an image "
                             "((C, H, W) with C 1 or 3, or (H, W)); use auto or false")
        if images is not False and shape is not None:
            title = f"{type(net).__name__} ({variant}), epoch {epoch}: effective gating weights"
            atomic_write(folder / f"epoch={epoch:04d}.png",
                         draw([A for A, _ in gating], shape, title, max_gates, columns, dpi, variant))
    return metrics([A for A, _ in gating])


def draw(weights: list[np.ndarray], shape: tuple[int, ...], title: str, max_gates: int = 16, columns: int = 8,
         dpi: int = 110, variant: str = "dlgn") -> bytes:
    """PNG bytes: per layer a grid of its first `max_gates` gates' weights as images of `shape`."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    shown = [min(len(A), max_gates) for A in weights]
    cols = min(columns, max(shown))
    rows = [math.ceil(k / cols) for k in shown]
    heights = [0.35] + [1.15 * r + 0.45 for r in rows]  # a title band, then one band per layer
    fig = Figure(figsize=(max(1.15 * cols, 5.0), sum(heights)), dpi=dpi)
    head, *subfigs = fig.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    head.suptitle(title, fontsize=9, y=0.6)
    for l, (A, sub, k, r) in enumerate(zip(weights, subfigs, shown, rows), start=1):
        axes = sub.subplots(r, cols, squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            ax.set_axis_off()
            if i >= k:
                continue
            a = A[i].reshape(shape)
            if a.ndim == 3:  # RGB: min-max scaled per gate
                span = float(a.max() - a.min())
                ax.imshow((a - a.min()) / span if span > 0 else np.zeros_like(a), interpolation="nearest")
            else:
                vmax = float(np.abs(a).max()) or 1.0
                ax.imshow(a, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_title(str(i + 1), fontsize=6, pad=1)
        note = f"first {k} of {len(A)} gates" if k < len(A) else f"all {len(A)} gates"
        product = f"W_{l}" if variant == "dlgn_sf" or l == 1 else f"W_{l}...W_1"
        sub.suptitle(f"layer {l}: {note} (rows of {product})", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


PROBE = NetworkProbe(name="halfspaces", compute=_compute, options=dict(OPTIONS),
                     description="DLGN gates' effective weights: halfspaces/epoch=NNNN.npz/.png, test/gate_* per layer")
