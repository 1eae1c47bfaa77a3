"""Re-evaluate saved codes without retraining.

    python -m activation_hash.evaluate CODES.npz [--which redundancy,knn] [--k 9] [--out OUT.json]
                                       [--backend auto|sklearn|torch] [--device cuda:0] [--threads N]

Loads a codes file (``train_codes``/``test_codes`` packed uint8, ``train_labels``/
``test_labels``, ``n_bits``; extras such as ``train/penultimate`` are passed to the families that
need them; other keys are ignored) with numpy only, by the one reader
(``activation_hash.codes.io.load_codes``, which checks every field's dtype and shape), computes the metric families, prints them as
a table and writes them as flat JSON beside the file (``CODES.metrics.json``, or ``--json``),
atomically. ``--which`` defaults to the paper's families plus every registered family whose
needs the file satisfies, so a new family is picked up without editing this module. Imports
neither torch, Lightning nor Hydra (torch only for ``--backend torch`` or a ``--device``).
Bad input (a file or field, one-class labels, a ``--device`` this machine lacks, an ``--out``
in a missing directory) prints one line ``error: key=value: what is allowed`` and exits 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .codes import io
from .metrics import WHICH, compute_families, families
from .metrics.torch_backend import BACKENDS
from .metrics.families.logreg import MODES as LOGREG_MODES
from .metrics.registry import EXTRAS, CodeSet, load_plugins

REQUIRED_KEYS = io.REQUIRED_KEYS


def read_codes(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a codes file, by the one reader (``activation_hash.codes.io.load_codes``)."""
    return io.load_codes(path)


def _check_labels(data: dict) -> None:
    """One class in a split leaves K-Means, K-NN and logistic regression nothing to tell apart."""
    for key in ("train_labels", "test_labels"):
        classes = np.unique(data[key])
        if classes.size < 2:
            raise ValueError(f"{key}={classes.tolist()}: one class only; the metrics need labels of at least 2 classes")


def _check_device(device: str | None) -> None:
    if device in (None, "cpu"):
        return
    from .devices import check_metrics_device  # imports torch: only for a non-CPU device
    try:
        check_metrics_device(device)
    except ValueError as err:
        raise ValueError(str(err).replace("metrics.device=", "--device=", 1)) from None


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise ValueError(f"--out={out}: is a directory; allowed: a JSON file path in an existing directory")
    if not out.parent.is_dir():
        raise ValueError(f"--out={out}: directory {out.parent} does not exist; allowed: a path in an existing directory")


def default_which(extras: set[str]) -> list[str]:
    """The paper's families, then every other registered family whose needs the file meets."""
    known = families()
    extra = [name for name, fam in sorted(known.items()) if name not in WHICH and
             all(f"{s}/{x}" in extras for x in fam.needs for s in ("train", "test"))]
    return [*WHICH, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m activation_hash.evaluate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("codes", type=Path, help="codes file (.npz)")
    parser.add_argument("--no-drop-constant", action="store_true",
                        help="keep units that are constant over train+test")
    parser.add_argument("--k", type=int, default=9, help="K-NN neighbours (default 9)")
    parser.add_argument("--out", "--json", dest="json", type=Path, default=None,
                        help="output JSON path (default: CODES.metrics.json beside the file)")
    parser.add_argument("--logreg-mode", choices=LOGREG_MODES, default="ovo")
    parser.add_argument("--which", default=None,
                        help=f"comma-separated metric families (default: {','.join(WHICH)} plus any "
                             f"registered family the file has the extras for)")
    parser.add_argument("--plugins", default="", help="comma-separated modules defining FAMILY")
    parser.add_argument("--device", default=None,
                        help="torch device of the torch backend (default: the CPU)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="sklearn (scikit-learn/faiss, CPU) | torch (on --device) | auto: torch on a CUDA "
                             "--device, else sklearn")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap on compute threads (default: library defaults)")
    args = parser.parse_args(argv)

    def fail(message: str) -> None:
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)

    out = args.json if args.json is not None else args.codes.with_suffix(".metrics.json")
    try:
        _check_device(args.device)
        _check_out(out)
        plugins = [p for p in args.plugins.split(",") if p]
        load_plugins(plugins)
        data = read_codes(args.codes)
        _check_labels(data)
        extras = {k: data[k] for k in data if k.split("/", 1)[-1] in EXTRAS and "/" in k}
        which = [w for w in args.which.split(",") if w] if args.which else default_which(set(extras))
        codes = CodeSet(data["train_codes"], data["train_labels"], data["test_codes"], data["test_labels"],
                        int(data["n_bits"]), extras)
        options = {"drop_constant": not args.no_drop_constant, "knn_k": args.k,
                   "logreg_mode": args.logreg_mode, "n_threads": args.threads, "plugins": plugins,
                   "backend": args.backend}
        start = time.perf_counter()
        metrics = compute_families(codes, which, options, device=args.device)
        elapsed = time.perf_counter() - start
    except ValueError as err:
        fail(str(err))
    atomic_write_json(out, metrics)
    width = max(map(len, metrics))
    lines = [f"{args.codes} ({elapsed:.2f} s)"]
    lines += [f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}"
              for name, value in metrics.items()]
    print("\n".join(lines) + f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
