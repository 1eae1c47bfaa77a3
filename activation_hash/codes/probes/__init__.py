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
from typing import Any, Protocol


class ProbeData(Protocol):
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


_REGISTRY: dict[str, NetworkProbe] = {}
_DISCOVERED = False


def register(probe: NetworkProbe) -> NetworkProbe:
    known = _REGISTRY.get(probe.name)
    if known is not None and known.compute is not probe.compute:
        raise ValueError(f"network probe {probe.name!r} is already registered (by {known.compute.__module__})")
    _REGISTRY[probe.name] = probe
    return probe


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
