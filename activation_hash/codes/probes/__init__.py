"""Network probes: measurements that need the network itself, not only its codes (stochastic
activation diameters, DeepFool robustness). The counterpart of metric families for models.

A probe is one module in this package (or a module named in ``metrics.plugins``) that defines
``PROBE = NetworkProbe(...)``. It runs at a capture when ``metrics.<name>.enabled`` is true, with
``metrics.<name>.*`` as its options (defaults in ``options``), and returns test-row metrics:

    def _compute(model, data, layers, *, n_samples=100):
        x, y = data.test_batch(n_samples)          # first n test samples, on the model's device
        return {"test/my_probe": float(model(x).argmax(1).eq(y).float().mean())}

    PROBE = NetworkProbe(name="my_probe", compute=_compute, options={"n_samples": 100})
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ProbeData(Protocol):
    out_dir: Path                 # the run directory (write files atomically: activation_hash.atomic)
    epoch: int                    # the capture's epoch
    input_shape: tuple[int, ...]

    def test_batch(self, n: int) -> tuple[Any, Any]:
        """The first ``n`` test inputs and labels as tensors on the model's device."""


@dataclass(frozen=True)
class NetworkProbe:
    """``compute(model, data: ProbeData, layers: list[int] | None, **options) -> {name: value}``;
    ``layers``: the 0-based code layers the run captures (None = all)."""
    name: str
    compute: Callable[..., dict[str, Any]]
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # for `metrics.<name>.enabled: auto`: input_shape -> whether to run (e.g. 2-D inputs only)
    auto: Callable[[tuple[int, ...]], bool] | None = None


_REGISTRY: dict[str, NetworkProbe] = {}
_DISCOVERED = False


def register(probe: NetworkProbe) -> NetworkProbe:
    known = _REGISTRY.get(probe.name)
    if known is not None and known.compute is not probe.compute:
        raise ValueError(f"network probe {probe.name!r} is already registered (by {known.compute.__module__})")
    _REGISTRY[probe.name] = probe
    return probe


def unregister(name: str) -> None:
    """Remove a registered probe (tests, interactive sessions); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def probes() -> dict[str, NetworkProbe]:
    global _DISCOVERED
    if not _DISCOVERED:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                module = importlib.import_module(f"{__name__}.{info.name}")
                if (probe := getattr(module, "PROBE", None)) is not None:
                    register(probe)
        _DISCOVERED = True
    return dict(_REGISTRY)


class _ProbeData:
    """What a probe sees of the data and the run: the first test samples, the run dir, the epoch."""

    def __init__(self, info: Any, device: Any, out_dir: Path, epoch: int):
        self._info, self._device = info, device
        self.out_dir, self.epoch = Path(out_dir), int(epoch)
        self.input_shape = tuple(info.input_shape)

    def test_batch(self, n: int) -> tuple[Any, Any]:
        return self._info.test_batch(int(n), self._device)


def enabled_probes(metrics_cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """{probe name: its options} for every registered probe whose `metrics.<name>.enabled` is true
    (or `auto` and the probe's `auto(input_shape)` says yes). Unknown option keys are errors."""
    chosen: dict[str, dict[str, Any]] = {}
    for name, probe in probes().items():
        section = dict(metrics_cfg.get(name) or {})
        if "enabled" in probe.options:  # the probe reads `enabled` itself (e.g. auto = 2-D inputs only)
            if section.get("enabled", probe.options["enabled"]) not in (False, None):
                chosen[name] = {**probe.options, **section}
            continue
        enabled = section.pop("enabled", False)
        if enabled == "auto":
            enabled = bool(probe.auto(input_shape)) if probe.auto is not None else False
        if enabled not in (True, False):
            raise ValueError(f"metrics.{name}.enabled={enabled!r}: allowed true, false"
                             + (", auto" if probe.auto is not None else ""))
        unknown = sorted(set(section) - set(probe.options))
        if unknown:
            raise ValueError(f"metrics.{name}: unknown option(s) {unknown}; allowed: {sorted(probe.options)}")
        if enabled:
            chosen[name] = {**probe.options, **section}
    return chosen


def run_probes(model: Any, info: Any, layers: list[int] | None, chosen: Mapping[str, Mapping[str, Any]],
               out_dir: Path, epoch: int) -> dict[str, Any]:
    """Run the chosen probes (see `enabled_probes`) on `model` at a capture; their metrics merged."""
    data = _ProbeData(info, next(model.parameters()).device, out_dir, epoch)
    out: dict[str, Any] = {}
    for name, options in chosen.items():
        out.update(probes()[name].compute(model, data, layers, **options))
    return out
