"""Terminal table of the encoding metrics over one run's captures (figures: activation_hash.analysis)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

# (metric, header): short headers so the table fits an 80-column terminal; every metric,
# including the Hungarian K-Means accuracy and tie counts, is in encoding.jsonl.
COLUMNS = [("train/redundancy", "red.tr"), ("test/redundancy", "red.te"), ("test/kmeans_acc", "kmeans"),
           ("test/knn_acc", "k-NN"), ("test/logreg_acc", "logreg"), ("train/net_acc", "net.tr"),
           ("test/net_acc", "net.te")]


def print_summary(records: list[dict[str, Any]], console: Console | None = None) -> None:
    by_epoch: dict[tuple[int, str], dict[str, Any]] = {}  # (epoch, selection); rows without one are `all`
    for row in records:
        by_epoch.setdefault((row["epoch"], row.get("selection", "all")), {}).update(row)
    if not by_epoch:
        return
    several = len({sel for _, sel in by_epoch}) > 1
    present = [(k, title) for k, title in COLUMNS if any(k in r for r in by_epoch.values())]
    table = Table(title="Encoding properties of the neural codes (test set unless .tr)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("epoch", justify="right")
    if several:
        table.add_column("selection")
    table.add_column("bits", justify="right")
    for _, title in present:
        table.add_column(title, justify="right")
    for key in sorted(by_epoch, key=lambda k: k[0]):  # by epoch, selections in their order
        row = by_epoch[key]
        bits = str(row.get("n_bits_used", row.get("n_bits", "")))
        table.add_row(str(key[0]), *([key[1]] if several else []), bits, *(f"{row[k]:.3f}" if row.get(k) is not None else ("dead" if row.get("dead_network") else "") for k, _ in present))
    (console or Console()).print(table)
