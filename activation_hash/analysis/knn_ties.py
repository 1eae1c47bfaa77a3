"""The report's K-NN section: what `test/knn_acc` means, and where ties decided many predictions.

Neural codes are discrete, so equal Hamming distances are common. `test/knn_acc` is the expected
accuracy under uniformly random tie-breaking (activation_hash/metrics/families/knn.py);
`test/knn_acc_index` breaks ties by training index and label order; `test/knn_tie_affected` is the
fraction of test points whose prediction some tie-breaking could change. This section tabulates,
per study, how large that fraction is at each run's last capture, and lists the grid points where
ties could change more than `LARGE` of the predictions. It reads the collected table only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from activation_hash.analysis.figures import markdown_table
from activation_hash.analysis.select import (display, matches, natural_order, seed_columns, select,
                                             setting_columns, varying)

LARGE = 0.5        # a grid point is listed when ties could change more than this share of predictions
LISTED = 12        # at most this many such grid points per report

DEFINITION = (
    "K-NN (k = `metrics.knn_k`, 9 by default) votes among the k training codes nearest in Hamming "
    "distance. Codes are discrete, so several training codes often share the k-th distance (a "
    "*boundary tie*) and several labels the top vote (a *vote tie*); which neighbours count is then a "
    "choice of the sort routine. `test/knn_acc` is therefore defined as the **expected accuracy under "
    "uniformly random tie-breaking** (every subset of the tied neighbours equally likely, a vote tie "
    "won by each top label with equal probability), computed exactly. `test/knn_acc_index` is the "
    "deterministic rule (lower training index, then smaller label wins); scikit-learn's "
    "`KNeighborsClassifier` agrees with both wherever no tie occurs. `test/knn_tie_affected` is the "
    "fraction of test points whose prediction some tie-breaking could change.")


def knn_ties_section(table: pd.DataFrame, ignore: Sequence[str] = ()) -> list[str]:
    lines = ["## K-NN accuracy and ties\n", DEFINITION + "\n"]
    if "test/knn_tie_affected" not in table.columns or table["test/knn_tie_affected"].isna().all():
        return lines + ["The table has no `test/knn_tie_affected` (runs made before tie-aware K-NN); "
                        "nothing to show.\n"]
    rows = select(table, at="last")
    rows = rows[rows["test/knn_tie_affected"].notna()]
    studies = natural_order(rows["study"].unique()) if "study" in rows.columns else [None]
    summary, large = [], []
    settings = setting_columns(rows, ignore)
    for study in studies:
        part = rows[matches(rows["study"], study)] if study is not None else rows
        affected = part["test/knn_tie_affected"].astype(float)
        gap = (part["test/knn_acc"].astype(float) - part["test/knn_acc_index"].astype(float)).abs() \
            if "test/knn_acc_index" in part.columns else pd.Series(dtype=float)
        summary.append([display(study), str(len(part)), f"{affected.median():.2f}", f"{affected.max():.2f}",
                        f"{(affected > LARGE).mean():.0%}", f"{gap.max():.3f}" if gap.notna().any() else ""])
        seeds = seed_columns(part, settings)
        keys = [c for c in varying(part, [c for c in settings if c not in seeds and c != "study"])]
        for key, point in (part.groupby(keys, dropna=False, sort=False) if keys else [((), part)]):
            share = float(point["test/knn_tie_affected"].astype(float).mean())
            if share > LARGE:
                values = key if isinstance(key, tuple) else (key,)
                # settings a model does not have (null) and the class when the model's name is shown say nothing
                shown = [(k, v) for k, v in zip(keys, values) if display(v) != "none"
                         and not (k == "model._target_" and "model_name" in keys)]
                where = ", ".join(f"`{k}` {display(v)}" for k, v in shown) or "(single setting)"
                large.append((share, [display(study), where, f"{share:.2f}",
                                      f"{point['test/knn_acc'].astype(float).mean():.3f}",
                                      f"{point['test/knn_acc_index'].astype(float).mean():.3f}"
                                      if "test/knn_acc_index" in point.columns else ""]))
    lines += ["Share of test points whose K-NN prediction ties could change, at each run's last capture:\n",
              markdown_table(["study", "runs", "median", "max", f"runs above {LARGE:.0%}",
                              "max abs(expected - index rule)"], summary)]
    if large:
        large.sort(key=lambda item: -item[0])
        lines += [f"Grid points where ties could change more than {LARGE:.0%} of the predictions "
                  f"(mean over seeds{'; the ' + str(LISTED) + ' largest' if len(large) > LISTED else ''}):\n",
                  markdown_table(["study", "setting", "tie-affected", "K-NN acc. (expected)", "K-NN acc. (index rule)"],
                                 [row for _, row in large[:LISTED]])]
    else:
        lines.append(f"No grid point has ties that could change more than {LARGE:.0%} of the predictions.\n")
    return lines
