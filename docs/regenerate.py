"""Rewrite the numbers the docs show from the command shown beside them, so none is typed by hand.

A regenerated block is a fenced code block between two markers that name its command:

    <!-- regenerate: python -m activation_hash -->
    ```
    Encoding properties of the neural codes (test set unless .tr)
     epoch   bits   red.tr ...
    ```
    <!-- /regenerate -->

This script runs each marker's command as written (once per distinct command, in a temporary
ACTIVATION_HASH_OUTPUT, with this Python) and rewrites the block with the table the run prints at
its end (activation_hash.summary.print_summary over the run's encoding.jsonl). Nothing outside the
markers changes.

    python docs/regenerate.py              # run every command, rewrite README.md and docs/*.md
    python docs/regenerate.py --check      # no run: every block is well formed (a test runs this)
    python docs/regenerate.py --files F --set KEY=VALUE ...   # tests: a copy, extra overrides

The default run (300 epochs on the 8x8 digits) takes about a minute on one CPU core.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PREFIX = "python -m activation_hash"
sys.path.insert(0, str(REPO))  # `python docs/regenerate.py` from a checkout
BLOCK = re.compile(r"<!-- regenerate: (?P<command>[^>]*?) -->\n(?P<body>.*?)<!-- /regenerate -->", re.S)
TITLE = "Encoding properties of the neural codes (test set unless .tr)"


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def table_rows(body: str) -> list[list[str]]:
    """The rows (epoch first) of a block's table; ValueError naming what is malformed."""
    lines = body.strip("\n").splitlines()
    if len(lines) < 4 or lines[0] != "```" or lines[-1] != "```":
        raise ValueError("must be one fenced code block (``` ... ```)")
    title, header, *rows = lines[1:-1]
    if title != TITLE:
        raise ValueError(f"first line must be the table's title {TITLE!r}")
    columns = header.split()
    if columns[:2] != ["epoch", "bits"]:
        raise ValueError("second line must be the header: epoch bits ...")
    parsed = [row.split() for row in rows]
    for row in parsed:
        if len(row) != len(columns) or not row[0].isdigit():
            raise ValueError(f"row {' '.join(row)!r} does not match the header {' '.join(columns)!r}")
    if not parsed:
        raise ValueError("has no rows")
    return parsed


def check(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        text = path.read_text()
        if text.count("<!-- regenerate:") != len(blocks(text)) or text.count("<!-- /regenerate -->") != len(blocks(text)):
            problems.append(f"{path}: unpaired <!-- regenerate: ... --> / <!-- /regenerate --> markers")
        for match in blocks(text):
            if not match["command"].startswith(PREFIX):
                problems.append(f"{path}: {match['command']!r} is not a `{PREFIX} ...` command")
            try:
                table_rows(match["body"])
            except ValueError as err:
                problems.append(f"{path}: block of {match['command']!r}: {err}")
    return problems


def render(records: list[dict]) -> str:
    """The table the run prints at its end, without the terminal's padding and rule."""
    from rich.console import Console
    from activation_hash.summary import print_summary
    buffer = io.StringIO()
    print_summary(records, Console(file=buffer, width=200, color_system=None))
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    return "\n".join(line for line in lines if line.strip() and set(line.strip()) != {"─"})


def run(command: str, extra: list[str]) -> str:
    """Run `command` as written (plus `extra` overrides) and return its table."""
    args = shlex.split(command)[len(PREFIX.split()):]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "ACTIVATION_HASH_OUTPUT": out}
        proc = subprocess.run([sys.executable, "-m", "activation_hash", *args, *extra], cwd=REPO, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{command} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
        (found,) = Path(out).rglob("encoding.jsonl")
        return render([json.loads(line) for line in found.read_text().splitlines()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that every block is well formed")
    parser.add_argument("--files", nargs="+", type=Path, default=FILES)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra override for every command (tests)")
    args = parser.parse_args(argv)
    problems = check(args.files)
    if problems or args.check:
        print("\n".join(problems) or f"ok: {sum(len(blocks(p.read_text())) for p in args.files)} regenerated blocks")
        return 1 if problems else 0
    tables: dict[str, str] = {}
    for path in args.files:
        text = path.read_text()
        if not blocks(text):
            continue
        for match in blocks(text):
            if match["command"] not in tables:
                print(f"running: {match['command']} {' '.join(args.set)}".rstrip(), flush=True)
                tables[match["command"]] = run(match["command"], args.set)
        new = BLOCK.sub(lambda m: f"<!-- regenerate: {m['command']} -->\n```\n{tables[m['command']]}\n```\n"
                                  "<!-- /regenerate -->", text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
