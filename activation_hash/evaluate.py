"""Re-evaluate saved codes without retraining.

    python -m activation_hash.evaluate CODES.npz [--which redundancy,knn] [--k 9] [--json OUT]

Loads a codes file (``train_codes``/``test_codes`` packed uint8, ``train_labels``/
``test_labels``, ``n_bits``; extras such as ``train/penultimate`` are passed to the families that
need them; other keys are ignored) with numpy only, computes the metric families, prints them as
a table and writes them as flat JSON beside the file (``CODES.metrics.json``, or ``--json``),
atomically. ``--which`` defaults to the paper's families plus every registered family whose
needs the file satisfies, so a new family is picked up without editing this module. Imports
neither torch, Lightning nor Hydra (torch only for ``--device cuda``).
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .metrics import WHICH, compute_families, families
from .metrics.families.logreg import MODES as LOGREG_MODES
from .metrics.registry import EXTRAS, CodeSet, load_plugins

REQUIRED_KEYS = ("train_codes", "test_codes", "train_labels", "test_labels", "n_bits")


def read_codes(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a codes file; ValueError with the file's name on anything else."""
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a codes file (.npz)")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an npz file (expected np.savez output, e.g. codes/epoch=0003.npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise ValueError(f"{path} is not a codes file: missing key(s) {missing}; "
                                 f"expected {list(REQUIRED_KEYS)}")
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path} is truncated or corrupt ({err})") from None
    except ValueError as err:
        if "codes file" in str(err):
            raise
        raise ValueError(f"{path} cannot be read: {err}") from None


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
    parser.add_argument("--json", type=Path, default=None,
                        help="output JSON path (default: CODES.metrics.json beside the file)")
    parser.add_argument("--logreg-mode", choices=LOGREG_MODES, default="ovo")
    parser.add_argument("--which", default=None,
                        help=f"comma-separated metric families (default: {','.join(WHICH)} plus any "
                             f"registered family the file has the extras for)")
    parser.add_argument("--plugins", default="", help="comma-separated modules defining FAMILY")
    parser.add_argument("--device", default=None,
                        help="torch device for K-NN distances (default: faiss on CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap on compute threads (default: library defaults)")
    args = parser.parse_args(argv)

    try:
        plugins = [p for p in args.plugins.split(",") if p]
        load_plugins(plugins)
        data = read_codes(args.codes)
        extras = {k: data[k] for k in data if k.split("/", 1)[-1] in EXTRAS and "/" in k}
        which = [w for w in args.which.split(",") if w] if args.which else default_which(set(extras))
        codes = CodeSet(data["train_codes"], data["train_labels"], data["test_codes"], data["test_labels"],
                        int(data["n_bits"]), extras)
        options = {"drop_constant": not args.no_drop_constant, "knn_k": args.k,
                   "logreg_mode": args.logreg_mode, "n_threads": args.threads, "plugins": plugins}
        start = time.perf_counter()
        metrics = compute_families(codes, which, options, device=args.device)
        elapsed = time.perf_counter() - start
    except ValueError as err:
        parser.error(str(err))
    out = args.json if args.json is not None else args.codes.with_suffix(".metrics.json")
    atomic_write_json(out, metrics)
    width = max(map(len, metrics))
    lines = [f"{args.codes} ({elapsed:.2f} s)"]
    lines += [f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}"
              for name, value in metrics.items()]
    print("\n".join(lines) + f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
