"""Metric families: the one extension point for new measurements of neural codes.

A family is one module in ``activation_hash/metrics/families/`` (or any importable module a user
names in ``metrics.plugins``) that defines ``FAMILY = MetricFamily(...)``: a pure function of a
``CodeSet`` (packed codes, labels and, where the family asks for them, per-sample arrays such as
the network's penultimate features), the metric names it may return, and its options with their
defaults. ``metrics.which`` lists the families a run computes; the callback, ``evaluate`` and the
report discover families here and need no edit when one is added.

    from activation_hash.metrics.registry import CodeSet, MetricFamily

    def _compute(codes: CodeSet, *, my_k: int = 3) -> dict[str, float]:
        return {"test/my_metric": float(codes.test_labels[:my_k].mean())}

    FAMILY = MetricFamily(name="my_family", names=("test/my_metric",), compute=_compute,
                          options={"my_k": 3})

This module imports neither torch, Lightning nor Hydra.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Per-sample arrays a family may ask for (``MetricFamily.needs``), each as "train/NAME" and
# "test/NAME" in ``CodeSet.extras``; the capture provides them only when a selected family needs them.
#   inputs       the network's inputs, flattened, float32 (n, d)
#   penultimate  the input of the network's last nn.Linear (its penultimate features), float32 (n, f)
#   logits       the network's outputs, float32 (n, C)
EXTRAS = ("inputs", "penultimate", "logits")


@dataclass(frozen=True)
class CodeSet:
    """One capture's codes: packed (np.packbits layout) train/test codes of ``n_bits`` bits,
    integer labels, and the extras the families asked for (see ``EXTRAS``).

    ``layer_names`` / ``layer_units`` describe the code's layers in order (bits of layer i follow
    those of layer i - 1), when known."""
    train_codes: np.ndarray
    train_labels: np.ndarray
    test_codes: np.ndarray
    test_labels: np.ndarray
    n_bits: int
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    layer_names: tuple[str, ...] = ()
    layer_units: tuple[int, ...] = ()


@dataclass(frozen=True)
class MetricFamily:
    """``compute(codes, **options) -> {metric name: value}``; ``names`` lists every name it may
    return (stable, namespaced, e.g. ``test/knn_acc``); ``options`` maps the option names it reads
    from ``metrics.*`` to their defaults; ``needs`` the extras it requires (names from ``EXTRAS``), ``wants`` those it uses when present;
    ``drop_constant``: whether it gets the codes after constant units are dropped (the paper's
    metrics) or all units; ``check(options)``: raises ValueError (``metrics.<key>=value: what
    is allowed``) on a bad value, beyond the type check against each default that every option
    gets (see ``activation_hash.metrics.validate_options``); ``needs_bits``: skipped, with
    ``dead_network: True`` in the results, when no unit varies (drop-constant families only).
    An option named ``device`` is not read from ``metrics.*``: it receives the ``device``
    argument of ``compute_families`` (a torch device, or None for the CPU); an option named
    ``backend`` receives the resolved ``metrics.backend`` ("sklearn" or "torch")."""
    name: str
    names: tuple[str, ...]
    compute: Callable[..., dict[str, Any]]
    options: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    drop_constant: bool = True
    description: str = ""
    # Extras the family uses when the codes carry them (the capture provides them as for
    # ``needs``) but can do without, e.g. on a codes file: they are never required.
    wants: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], None] | None = None
    needs_bits: bool = True
    # False: the family reads no code bits (only labels, extras and layer names), so a capture that
    # never holds the codes (codes.source=network) can still run it, on code arrays of no columns
    reads_codes: bool = True


_REGISTRY: dict[str, MetricFamily] = {}
_DISCOVERED = False


def register(family: MetricFamily) -> MetricFamily:
    """Add a family (idempotent for the same object); a second family under one name is an error."""
    if not isinstance(family, MetricFamily):
        raise TypeError(f"register: expected a MetricFamily, got {type(family).__name__}")
    known = _REGISTRY.get(family.name)
    if known is not None and known is not family and known.compute is not family.compute:
        raise ValueError(f"metric family {family.name!r} is already registered (by {known.compute.__module__})")
    unknown = [n for n in (*family.needs, *family.wants) if n not in EXTRAS]
    if unknown:
        raise ValueError(f"metric family {family.name!r} needs unknown extras {unknown}; allowed: {list(EXTRAS)}")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a registered family (tests, interactive sessions); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def load_plugins(modules: Iterable[str]) -> None:
    """Import user modules that define ``FAMILY`` (``metrics.plugins``) and register them."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"metrics.plugins: cannot import {name!r} ({err})") from None
        family = getattr(module, "FAMILY", None)
        if family is None:
            raise ValueError(f"metrics.plugins: module {name!r} defines no FAMILY = MetricFamily(...)")
        register(family)


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module(f"{__package__}.families")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if family is not None:
            register(family)
    _DISCOVERED = True


def families() -> dict[str, MetricFamily]:
    """Every registered family by name (built-in ones discovered on first call)."""
    _discover()
    return dict(_REGISTRY)


def get(name: str) -> MetricFamily:
    known = families()
    if name not in known:
        raise ValueError(f"metrics.which: unknown metric family {name!r}; registered: {sorted(known)}")
    return known[name]
