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
import logging
import sys
from collections.abc import Sequence

from activation_hash.analysis.claims import claims_record, evaluate_all
from activation_hash.analysis.collect import collect_runs, load_table, save_table
from activation_hash.analysis.report import build_report, load_config


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
    if bool(args.dirs) == bool(args.table):
        parser.error("report needs run directories or --table, not both")
    try:
        path = build_report(args.out, runs=args.dirs, table_path=args.table, cfg=load_config(args.config, args.set))
    except (ValueError, FileNotFoundError) as err:
        parser.exit(1, f"error: {err}\n")
    print(f"report -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
