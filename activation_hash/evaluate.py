"""Re-evaluate saved codes without retraining.

    python -m activation_hash.evaluate CODES.npz [--no-drop-constant] [--k 9] [--json OUT]

Loads a codes file (``train_codes``/``test_codes`` packed uint8, ``train_labels``/
``test_labels``, ``n_bits``; other keys are ignored), computes the encoding metric set, prints
it as a table and writes it as flat JSON beside the file (``CODES.metrics.json``, or ``--json``),
atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .atomic import atomic_write_json
from .codes.io import load_codes
from .metrics import LOGREG_MODES, WHICH, encoding_metrics


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


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
    parser.add_argument("--which", default=",".join(WHICH),
                        help=f"comma-separated metric groups (default: {','.join(WHICH)})")
    parser.add_argument("--device", default=None,
                        help="torch device for K-NN distances (default: faiss on CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap on compute threads (default: library defaults)")
    args = parser.parse_args(argv)

    try:
        codes = load_codes(args.codes)
        start = time.perf_counter()
        metrics = encoding_metrics(
            codes["train_codes"], codes["train_labels"], codes["test_codes"], codes["test_labels"],
            int(codes["n_bits"]), drop_constant=not args.no_drop_constant, knn_k=args.k,
            logreg_mode=args.logreg_mode, which=[w for w in args.which.split(",") if w],
            device=args.device, n_threads=args.threads)
        elapsed = time.perf_counter() - start
    except (OSError, ValueError) as err:
        parser.error(str(err))
    out = args.json if args.json is not None else args.codes.with_suffix(".metrics.json")
    atomic_write_json(out, metrics)
    console = Console()
    console.print(metrics_table(metrics, f"{args.codes} ({elapsed:.2f} s)"))
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
