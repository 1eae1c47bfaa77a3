"""Pick, match and average rows of the collected table; shared by the figures and the phase chart.

The table has one row per run, capture epoch and layer selection (`selection`, `all` by default). Its columns are of three sorts:
- metrics: every name with a "/" (`train/redundancy`, `test/knn_acc`, ...);
- capture and run bookkeeping: `CAPTURE_COLUMNS`, `RUN_COLUMNS`;
- settings: everything else that is constant within a run (the dotted config values,
  `seed`, `study`, ...). `BOOKKEEPING` settings (paths, loggers, devices) never define a grid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatch
from typing import Any

import numpy as np
import pandas as pd

from activation_hash.rundir import NOT_RESULT_KEYS

SELECTION = "selection"   # the layer selection a capture row was scored on (collect.py)
RUN_COLUMNS = ("run_dir", "finished", "git_revision", "epochs_trained", "train_seconds")
CAPTURE_COLUMNS = ("epoch", "step", "reason", "split", "n_bits", "n_bits_used", "capture_seconds")
# result-neutral keys (one list: activation_hash.rundir) and what they hold, for flattened columns
BOOKKEEPING = (*NOT_RESULT_KEYS, *(f"{k}.*" for k in NOT_RESULT_KEYS), "trainer.strategy", "codes.save")


class Skip(Exception):
    """A recipe or chart that does not apply to this table; the report lists it with the reason."""


def is_metric(column: str) -> bool:
    return "/" in column


def is_numeric(series: pd.Series) -> bool:
    """A numeric axis (booleans are categories)."""
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def setting_columns(table: pd.DataFrame, ignore: Sequence[str] = ()) -> list[str]:
    """Columns that describe a run's settings: not metrics, not bookkeeping, constant within runs."""
    patterns = (*BOOKKEEPING, *ignore)
    candidates = [c for c in table.columns
                  if not is_metric(c) and c not in RUN_COLUMNS and c not in CAPTURE_COLUMNS
                  and not any(fnmatch(c, p) for p in patterns)]
    if not candidates or table.empty:
        return candidates
    per_run = table.groupby("run_dir", dropna=False)[candidates].nunique(dropna=False)
    # a capture's layer selection varies within a run (codes.selections) but is a setting of its code
    return [c for c in candidates if c == SELECTION or (per_run[c] <= 1).all()]


def seed_columns(rows: pd.DataFrame, settings: Sequence[str]) -> set[str]:
    """`seed` and the settings that equal it on every row (e.g. `data.seed: ${seed}`)."""
    if "seed" not in rows.columns:
        return set()
    seed = rows["seed"].map(normalize)
    return {"seed"} | {c for c in settings if c != "seed" and rows[c].map(normalize).equals(seed)}


def varying(table: pd.DataFrame, columns: Iterable[str]) -> dict[str, list[Any]]:
    """The columns among `columns` that take more than one value (null counts as a value)."""
    return {c: natural_order(table[c].unique()) for c in columns if table[c].nunique(dropna=False) > 1}


def mixed_settings(rows: pd.DataFrame, keys: Sequence[str], ignore: Sequence[str] = ()) -> dict[str, list[Any]]:
    """Settings (other than the seed) that differ between runs averaged into the same point."""
    settings = setting_columns(rows, ignore)
    seeds = seed_columns(rows, settings)
    others = [c for c in settings if c not in keys and c not in seeds]
    if not others or rows.empty:
        return {}
    if keys:
        spread = rows.groupby(list(keys), dropna=False)[others].nunique(dropna=False).max()
    else:
        spread = rows[others].nunique(dropna=False)
    return {c: natural_order(rows[c].unique()) for c in others if spread[c] > 1}


def normalize(value: Any) -> str | None:
    """A canonical text form so 1 == 1.0 == "1", True == "True", and None == NaN == "null"."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered
    if lowered in ("none", "null", "nan", ""):
        return None
    try:
        return normalize(float(text))
    except ValueError:
        return text


def matches(column: pd.Series, value: Any) -> pd.Series:
    """Rows whose value equals `value` (a list means any of them), compared by `normalize`."""
    wanted = value if isinstance(value, (list, tuple)) else [value]
    targets = {normalize(v) for v in wanted}
    normalized = column.map(normalize)  # "none" / "null" / NaN all normalize to None
    return normalized.isin(targets - {None}) | (normalized.isna() if None in targets else False)


def select(table: pd.DataFrame, study: str | Sequence[str] | None = None,
           filter: Mapping[str, Any] | None = None, at: Any = "last") -> pd.DataFrame:
    """The rows of `study` that pass `filter`, at the captures `at` picks.

    at: "last" (each run's last capture) | "all" | an epoch | a list of epochs.
    Raises Skip when a named column is missing or nothing is left.
    """
    rows = table
    conditions = dict(filter or {})
    if study is not None:
        conditions = {"study": study, **conditions}
    for column, value in conditions.items():
        if column not in rows.columns:
            raise Skip(f"column `{column}` is not in the table")
        rows = rows[matches(rows[column], value)]
        if rows.empty:
            raise Skip(f"no rows with {column} = {value}")
    rows = rows[rows["epoch"].notna()]
    if at == "last":
        rows = rows[rows["epoch"] == rows.groupby("run_dir")["epoch"].transform("max")]
    elif at != "all":
        rows = rows[matches(rows["epoch"], at)]
    if rows.empty:
        raise Skip(f"no captures at epoch {at}" if at not in ("last", "all") else "no captures")
    return rows


def resolve_at(at: Any, *axes: str | None) -> Any:
    """`auto` means every capture when an axis is training time, else each run's last capture."""
    if at == "auto":
        return "all" if {"epoch", "step"} & set(axes) else "last"
    return at


def aggregate(rows: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, standard deviation (over runs, i.e. seeds) and count of each metric per key combination.

    Long format: the key columns, `metric`, `mean`, `std`, `n`.
    """
    values = rows[[*keys, *metrics]].copy()
    for m in metrics:
        values[m] = pd.to_numeric(values[m], errors="coerce")
    long = values.melt(id_vars=list(keys), value_vars=list(metrics), var_name="metric", value_name="value")
    long = long.dropna(subset=["value"])
    out = (long.groupby([*keys, "metric"], dropna=False, sort=False)["value"]
           .agg(mean="mean", std="std", n="count").reset_index())
    return sort_by(out, [*keys, "metric"])


def sort_by(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Sort numbers numerically and text naturally ("layer 2" before "layer 10"), nulls last."""
    return frame.sort_values(list(columns), key=lambda s: s.map(_sort_key), kind="stable").reset_index(drop=True)


def natural_order(values: Iterable[Any]) -> list[Any]:
    unique = list(dict.fromkeys(v for v in values))
    nulls = [v for v in unique if normalize(v) is None][:1]
    rest = [v for v in unique if normalize(v) is not None]
    return sorted(rest, key=_sort_key) + nulls


def _sort_key(value: Any) -> tuple:
    text = normalize(value)
    if text is None:
        return (2, ())
    try:
        return (0, (float(text),))
    except ValueError:
        return (1, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p))


def display(value: Any) -> str:
    """A value as shown in legends and tables: 40 not 40.0, class paths by their last part."""
    text = normalize(value)
    if text is None:
        return "none"
    if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*){2,}", text):
        return text.rsplit(".", 1)[-1]
    return text
