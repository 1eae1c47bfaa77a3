"""One capture's metrics: the paper's metric set plus every other registered family in `which`."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from .bits import drop_constant_bits
from .encoding import WHICH, encoding_metrics
from .registry import CodeSet, families, get


def compute_families(codes: CodeSet, which: Iterable[str] = WHICH, options: Mapping[str, Any] | None = None,
                     device: Any = None) -> dict[str, Any]:
    """Metrics of `codes` for the families in `which`; `options` are the `metrics.*` settings."""
    options = dict(options or {})
    which = [which] if isinstance(which, str) else list(which)
    others = [name for name in which if name not in WHICH]
    for name in others:
        get(name)  # unknown family names fail before anything is computed
    paper_keys = set(inspect.signature(encoding_metrics).parameters)
    out = encoding_metrics(codes.train_codes, codes.train_labels, codes.test_codes, codes.test_labels,
                           codes.n_bits, which=[w for w in which if w in WHICH], device=device,
                           **{k: v for k, v in options.items() if k in paper_keys and k != "which"})
    dropped = None
    for name in others:
        family = families()[name]
        view = codes
        if family.drop_constant and options.get("drop_constant", True):
            if dropped is None:
                train, test, n_used = drop_constant_bits(codes.train_codes, codes.test_codes, codes.n_bits)
                dropped = replace(codes, train_codes=train, test_codes=test, n_bits=n_used)
            view = dropped
        section = options.get(name) if isinstance(options.get(name), Mapping) else {}
        kwargs = {k: section.get(k, options.get(k, default)) for k, default in family.options.items()}
        if "device" in inspect.signature(family.compute).parameters:
            kwargs["device"] = device
        out.update(family.compute(view, **kwargs))
    return out
