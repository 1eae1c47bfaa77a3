"""Command line of the analysis: collect run directories into a table, or build the report.

    python -m activation_hash.analysis collect DIRS... --out table.csv
    python -m activation_hash.analysis report DIRS... --out REPORT_DIR [--config NAME|FILE] [--set KEY=VALUE]...
    python -m activation_hash.analysis report --table table.csv --out REPORT_DIR
    python -m activation_hash.analysis claims --table table.csv [--out claims.csv]   # the claims record (Markdown)

DIRS are run directories or sweep (multirun) directories, searched recursively. `--config`
merges a file (or conf/report/NAME.yaml) over conf/report/default.yaml; `--set` changes single
values, e.g. `--set phase.rule.eps_r=0.02 --set include_unfinished=true`.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from activation_hash.analysis.claims import claims_record, evaluate_all
from activation_hash.analysis.collect import collect_runs, load_table, save_table
from activation_hash.analysis.report import build_report, load_config, parse_config

EXIT_INPUT_ERROR = 2
# report settings with a range beyond their type (the rest: the type of the default's value)
_RANGES = {"dpi": (1, None), "phase.rule.eps_r": (0, None), "phase.rule.eps_a": (0, None),
           "phase.rule.rho_u": (0, None), "phase.rule.delta_u": (0, None), "phase.rule.plateau_quantile": (0, 1),
           "retrieval.pr_bits": (1, None)}
TABLE_COLUMNS = ("run_dir", "finished")


class InputError(ValueError):
    """A bad argument: the message is `KEY=VALUE: what is allowed`."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"{key}={value}: {allowed}")


def writable_file(key: str, path: str) -> None:
    """`path` can be written as a file: not a directory, and its nearest existing folder writable."""
    target = Path(path)
    if target.is_dir():
        raise InputError(key, path, "is a directory; give a file name to write")
    _writable_parent(key, path, target.parent)


def writable_dir(key: str, path: str) -> None:
    """`path` is (or can become) a directory that can be written."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(key, path, "is a file; give a directory (it is created when missing)")
    _writable_parent(key, path, target)


def _writable_parent(key: str, path: str, folder: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(key, path, f"cannot be created: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(key, path, f"cannot be written: {probe} is not writable")


def check_table(path: str) -> None:
    table = Path(path)
    if not table.is_file():
        raise InputError("--table", path, "no such file; give a table written by `collect` (or a report's table.csv)")
    try:
        columns = set(load_table(table).columns)
    except Exception as err:  # noqa: BLE001 - pandas' parser errors
        raise InputError("--table", path, f"is not a CSV table ({type(err).__name__}: {' '.join(str(err).split())})"
                         ) from None
    if missing := [c for c in TABLE_COLUMNS if c not in columns]:
        raise InputError("--table", path, f"is not a collected table: no column(s) {', '.join(missing)} "
                                          "(write one with `python -m activation_hash.analysis collect`)")


def check_sets(base: DictConfig, overrides: Sequence[str]) -> None:
    """Every --set KEY=VALUE names a setting of the report config and has its type."""
    for text in overrides:
        if "=" not in text:
            raise InputError("--set", text, "must be KEY=VALUE, e.g. --set dpi=200")
        key, _, raw = text.partition("=")
        key = key.strip()
        current = OmegaConf.select(base, key, default=_ABSENT, throw_on_missing=False)
        if current is _ABSENT:
            keys = _report_keys(base)
            near = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            raise InputError(key, raw, "no such report setting" + (f"; did you mean {near[0]}?" if near else
                                                                   f"; settings: {', '.join(keys[:12])}, ..."))
        value = OmegaConf.from_dotlist([f"v={raw}"]).v if raw else ""
        problem = _type_problem(current, value)
        if problem is None and key in _RANGES:
            lo, hi = _RANGES[key]
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                problem = f"must be in {lo}..{hi}" if hi is not None else f"must be >= {lo}"
        if problem:
            raise InputError(key, raw, problem)


_ABSENT = object()


def _type_problem(current: Any, value: Any) -> str | None:
    if current is None:
        return None  # a null default takes anything
    if isinstance(current, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(current, (int, float)):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if isinstance(current, ListConfig):
        return None if isinstance(value, (list, ListConfig)) else "must be a list, e.g. [a,b]"
    if isinstance(current, DictConfig):
        return None if isinstance(value, (dict, DictConfig)) else "must be a mapping, e.g. {a: 1}"
    return None


def _report_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg.keys():
        keys.append(f"{prefix}{key}")
        if key in ("labels", "value_labels") or OmegaConf.is_missing(cfg, key) or OmegaConf.is_interpolation(cfg, key):
            continue  # a leaf: not descended into, nothing resolved
        node = cfg[key]
        if isinstance(node, DictConfig):
            keys += _report_keys(node, f"{prefix}{key}.")
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m activation_hash.analysis", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect", help="collect run directories into one CSV table")
    collect.add_argument("dirs", nargs="+", help="run or sweep directories")
    collect.add_argument("--out", required=True, help="the CSV file to write")
    report = commands.add_parser("report", help="table, figures, phase charts and report.md")
    report.add_argument("dirs", nargs="*", help="run or sweep directories")
    report.add_argument("--table", help="use this collected table instead of DIRS")
    report.add_argument("--out", required=True, help="the report directory")
    report.add_argument("--config", help="a report config file, or a name in conf/report/")
    report.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override (repeatable)")
    claims = commands.add_parser("claims", help="every registered claim's verdict on a collected table, as Markdown")
    claims.add_argument("--table", required=True, help="a collected table (table.csv of a report)")
    claims.add_argument("--out", help="also write claims.csv here")
    args = parser.parse_args(argv)
    try:
        cfg = _check(args)
    except (InputError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "collect":
        table = collect_runs(args.dirs)
        if table.empty:
            parser.exit(1, f"no run directories found under {' '.join(args.dirs)}\n")
        save_table(table, args.out)
        print(f"{table['run_dir'].nunique()} runs, {len(table)} rows -> {args.out}")
        return 0
    if args.command == "claims":
        frame = evaluate_all(load_table(args.table))
        if args.out:
            save_table(frame, args.out)
        print(claims_record(frame))
        return 0
    try:
        path = build_report(args.out, runs=args.dirs, table_path=args.table, cfg=cfg)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(1, f"error: {err}\n")
    print(f"report -> {path}")
    return 0


def _check(args: argparse.Namespace) -> DictConfig | None:
    """Every argument checked before anything is read or written; the report config."""
    if args.command == "claims":
        check_table(args.table)
        if args.out:
            writable_file("--out", args.out)
        return None
    for folder in args.dirs:
        if not Path(folder).is_dir():
            raise InputError("dirs", folder, "no such directory; give run or sweep directories")
    if args.command == "collect":
        writable_file("--out", args.out)
        return None
    if bool(args.dirs) == bool(args.table):
        raise InputError("--table", args.table, "report reads run directories or --table, not both (nor neither)")
    writable_dir("--out", args.out)
    if args.table:
        check_table(args.table)
    try:
        base = load_config(args.config)
    except FileNotFoundError as err:
        raise InputError("--config", args.config, str(err).split(": ", 1)[-1]) from None
    check_sets(base, args.set)
    cfg = load_config(args.config, args.set)
    try:
        parse_config(cfg)
    except (ValueError, TypeError) as err:
        raise InputError(*_blame(str(err), args.set), " ".join(str(err).split())) from None
    return cfg


def _blame(message: str, overrides: Sequence[str]) -> tuple[str, str]:
    """The --set KEY, VALUE a report-config error is about (the first one its message names)."""
    for text in overrides:
        key, _, value = text.partition("=")
        if key.rsplit(".", 1)[-1] in message:
            return key, value
    return "--config", "the report config"


if __name__ == "__main__":
    sys.exit(main())
