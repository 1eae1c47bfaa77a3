"""The metric families of one capture: train and test codes in, stable metric names out.

``compute_families(codes, which, options, device)`` validates the inputs, drops the units that
are constant (all 0 or all 1) over train and test together once (for the families that ask for
it, ``MetricFamily.drop_constant``; unless ``options["drop_constant"]`` is false), and returns
    n_bits, n_bits_used, train/n, test/n          (bits before / after dropping, split sizes)
then every selected family's metrics, in ``which`` order, then
    backend                                       (sklearn or torch: which computed them).
The built-in paper families are
``WHICH`` = redundancy, kmeans, knn, logreg (``activation_hash/metrics/families/``); users add
theirs with ``metrics.plugins`` (modules defining ``FAMILY``). ``METRIC_NAMES`` lists the
names of the paper families. ``*_acc`` and redundancies are fractions in [0, 1].

A dead network (no unit varies, ``n_bits_used == 0``) is reported as ``dead_network: True``; the
families that need bits (``MetricFamily.needs_bits``) are then skipped, redundancy is still
computed ((n - 1) / n). ``encoding_metrics`` is the keyword form of the same computation.

``validate_options(which, options)`` checks ``metrics.which`` and every selected family's
options against their defaults' types and the family's own ``check``, so that a config layer
can reject a typo before training; errors read ``metrics.<key>=value: what is allowed``.
Memory: see each family's module; nothing builds an unpacked n x n_bits array beyond
``max_dense_bytes``. This module imports neither torch, Lightning, Hydra nor faiss.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import os

import numpy as np

from .bits import check_packed, drop_constant_bits
from .registry import CodeSet, families, load_plugins
from .threads import thread_limit
from .torch_backend import BACKENDS, resolve

WHICH = ("redundancy", "kmeans", "knn", "logreg")
BASE_NAMES = ("n_bits", "n_bits_used", "train/n", "test/n")
# Options read by compute_families itself (not by a family), with their defaults.
GENERAL_OPTIONS: Mapping[str, Any] = {"drop_constant": True, "n_threads": None, "plugins": (), "backend": "auto",
                                      "max_ram": None}
# Family options filled by compute_families itself, not read from metrics.*
_INJECTED = ("device", "backend", "max_ram")
RAM_FRACTION = 4  # metrics.max_ram=null: a quarter of the machine's RAM
MIN_RAM = 2**20


def physical_ram() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def resolve_max_ram(max_ram: int | None) -> int:
    """The metrics' memory budget in bytes: ``metrics.max_ram``, or a quarter of the RAM."""
    return physical_ram() // RAM_FRACTION if max_ram is None else int(max_ram)
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _metric_names() -> tuple[str, ...]:
    known = families()
    return BASE_NAMES + tuple(name for w in WHICH for name in known[w].names)


def __getattr__(name: str) -> Any:  # METRIC_NAMES is derived from the registry on first use
    if name == "METRIC_NAMES":
        return _metric_names()
    raise AttributeError(name)


def _check_type(key: str, value: Any, default: Any) -> None:
    kind = type(default)
    if default is None or kind not in _TYPE_NAMES:
        return
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, (int, np.integer)) and not isinstance(value, bool) if kind is int else
          isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) if kind is float
          else isinstance(value, str))
    if not ok:
        raise ValueError(f"metrics.{key}={value!r}: must be {_TYPE_NAMES[kind]}")


def _which_tuple(which: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(which, str):
        return (which,)
    which = tuple(which)
    if not all(isinstance(w, str) for w in which):
        raise ValueError(f"metrics.which={list(which)}: must be a list of metric family names")
    return which


def validate_options(which: Iterable[str] | str, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Check ``metrics.which`` and the options of its families (module docstring); return each
    family's resolved options (defaults filled in, ``device`` left out). Raises ValueError."""
    plugins = options.get("plugins") or ()
    if isinstance(plugins, str) or not all(isinstance(p, str) for p in plugins):
        raise ValueError(f"metrics.plugins={plugins!r}: must be a list of importable module names")
    load_plugins(plugins)
    for key in ("drop_constant",):
        if key in options:
            _check_type(key, options[key], GENERAL_OPTIONS[key])
    backend = options.get("backend", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"metrics.backend={backend!r}: allowed: {', '.join(BACKENDS)}")
    max_ram = options.get("max_ram")
    if max_ram is not None and (isinstance(max_ram, bool) or not isinstance(max_ram, int) or max_ram < MIN_RAM):
        raise ValueError(f"metrics.max_ram={max_ram!r}: must be null (a quarter of the RAM) or bytes >= {MIN_RAM}")
    n_threads = options.get("n_threads")
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
        raise ValueError(f"metrics.n_threads={n_threads!r}: must be null or an integer >= 1")
    which = _which_tuple(which)
    known = families()
    for name in which:
        if name not in known:
            raise ValueError(f"metrics.which=[{', '.join(which)}]: unknown metric family {name!r}; "
                             f"registered: {sorted(known)}")
    resolved = {}
    for name in which:
        family = known[name]
        opts = {key: options.get(key, default) for key, default in family.options.items()
                if key not in _INJECTED}
        for key, value in opts.items():
            if value is None and family.options[key] is not None:
                raise ValueError(f"metrics.{key}=null: must be {_TYPE_NAMES.get(type(family.options[key]), 'set')}")
            _check_type(key, value, family.options[key])
        if family.check is not None:
            family.check(opts)
        resolved[name] = opts
    return resolved


def _check_labels(labels: object, n_rows: int, name: str, codes_name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}: shape {labels.shape}; labels must be 1-D")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: dtype {labels.dtype}; labels must be integers")
    if labels.shape[0] != n_rows:
        raise ValueError(f"{name}: {labels.shape[0]} labels for {n_rows} rows of {codes_name}")
    return labels


def _check_codes(codes: CodeSet) -> CodeSet:
    n_bits = codes.n_bits
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < 0:
        raise ValueError(f"n_bits={n_bits!r}: must be an integer >= 0")
    train = check_packed(codes.train_codes, int(n_bits), "train_codes")
    test = check_packed(codes.test_codes, int(n_bits), "test_codes")
    for name, packed in (("train_codes", train), ("test_codes", test)):
        if packed.shape[0] == 0:
            raise ValueError(f"{name}: 0 codes; each split needs at least 1")
    y_train = _check_labels(codes.train_labels, train.shape[0], "train_labels", "train_codes")
    y_test = _check_labels(codes.test_labels, test.shape[0], "test_labels", "test_codes")
    return CodeSet(train, y_train, test, y_test, int(n_bits), codes.extras, codes.layer_names, codes.layer_units)


def _check_device(device: Any) -> Any:
    """None or "cpu": faiss on the CPU; anything else is a torch device (torch imported here)."""
    if device is None or (isinstance(device, str) and device == "cpu"):
        return None
    import torch
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"metrics.device={device!r}: not a torch device ({err})") from None
    return None if device.type == "cpu" else device


def compute_families(codes: CodeSet, which: Iterable[str] | str, options: Mapping[str, Any] | None = None,
                     device: Any = None) -> dict[str, Any]:
    """Every family in ``which`` on ``codes``; see the module docstring for the names.

    ``options``: ``metrics.*`` (family options, ``drop_constant``, ``n_threads``, ``plugins``,
    ``backend``; other keys are ignored). ``device``: torch device for the families that take
    one; None or "cpu" = the CPU. ``backend``: auto (torch on a CUDA device, else sklearn) |
    sklearn | torch (on ``device``, or the CPU); the result's ``backend`` says which ran.
    Bad inputs raise ValueError naming them.
    """
    options = dict(options or {})
    resolved = validate_options(which, options)
    codes = _check_codes(codes)
    device = _check_device(device)
    backend = resolve(options.get("backend", "auto"), device)
    known = families()
    selected = [known[name] for name in resolved]
    for family in selected:
        missing = [f"{split}/{x}" for x in family.needs for split in ("train", "test")
                   if f"{split}/{x}" not in codes.extras]
        if missing:
            raise ValueError(f"metric family {family.name!r} needs {missing}, which the codes do not provide")
    drop = options.get("drop_constant", True)
    max_ram = resolve_max_ram(options.get("max_ram"))
    with thread_limit(options.get("n_threads")), tempfile.TemporaryDirectory(prefix="ah-metrics-") as spill:
        kept, n_used = codes, codes.n_bits
        if drop and any(f.drop_constant for f in selected):
            # codes over a quarter of the budget are repacked into memory-mapped files, not RAM
            big = codes.train_codes.nbytes + codes.test_codes.nbytes > max_ram // 4
            train, test, n_used = drop_constant_bits(codes.train_codes, codes.test_codes, codes.n_bits,
                                                     spill_dir=spill if big else None)
            kept = replace(codes, train_codes=train, test_codes=test, n_bits=n_used)  # layer names kept
        out: dict[str, Any] = {"n_bits": codes.n_bits, "n_bits_used": n_used,
                               "train/n": int(codes.train_codes.shape[0]), "test/n": int(codes.test_codes.shape[0])}
        dead = n_used == 0
        for family in selected:
            if dead and family.drop_constant and family.needs_bits:
                continue
            opts = dict(resolved[family.name])
            if "device" in family.options:
                opts["device"] = device
            if "backend" in family.options:
                opts["backend"] = backend
            if "max_ram" in family.options:
                opts["max_ram"] = max_ram
            if "max_dense_bytes" in opts:  # the dense / streaming switch obeys the budget
                opts["max_dense_bytes"] = min(opts["max_dense_bytes"], max(1, max_ram // 4))
            out.update(family.compute(kept if family.drop_constant else codes, **opts))
        if dead:
            out["dead_network"] = True
        out["backend"] = backend
    return out


def encoding_metrics(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                     test_labels: np.ndarray, n_bits: int, *, which: Iterable[str] = WHICH,
                     device: Any = None, **options: Any) -> dict[str, Any]:
    """``compute_families`` on arrays, options as keywords (``knn_k=9``, ``logreg_mode="ovo"``,
    ``drop_constant``, ``n_threads``, ...). ``device="auto"`` means the CPU here: resolving it
    to the trainer's device is the caller's job."""
    if isinstance(device, str) and device == "auto":
        device = None
    codes = CodeSet(train_codes, train_labels, test_codes, test_labels, n_bits)
    return compute_families(codes, which, options, device=device)
