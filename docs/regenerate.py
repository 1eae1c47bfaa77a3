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
its end (activation_hash.summary.print_summary over the run's encoding.jsonl). A command may go on
with `&& python docs/examples/SCRIPT.py outputs/runs/DATE/TIME ...`: the script then runs on the
run's directory (which replaces `outputs/runs/DATE/TIME`) and the block is what it prints (a header
row starting `epoch`, a row per capture). Nothing outside the markers changes.

    python docs/regenerate.py              # run every command, rewrite README.md and docs/*.md
    python docs/regenerate.py --only mnist # only the blocks whose command contains `mnist`
    python docs/regenerate.py --check      # no run: every block is well formed (a test runs this)
    python docs/regenerate.py --files F --set KEY=VALUE ...   # tests: a copy, extra overrides

The data sets are read where the runs find them (ACTIVATION_HASH_DATA). What each command costs on
one machine is in bench/README.md ("Regenerated docs blocks").
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
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PREFIX = "python -m activation_hash"
sys.path.insert(0, str(REPO))  # `python docs/regenerate.py` from a checkout
BLOCK = re.compile(r"^(?P<indent>[ ]*)<!-- regenerate: (?P<command>[^>]*?) -->\n(?P<body>.*?)^(?P=indent)<!-- /regenerate -->",
                   re.S | re.M)  # indented as a whole inside a list item
TITLE = "Encoding properties of the neural codes (test set unless .tr)"
THEN = " && "  # a run, then an example script on its directory
SCRIPTS = "python docs/examples/"
RUN_DIR = "outputs/runs/DATE/TIME"  # what the docs show for "the run directory printed above"


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def parts(command: str) -> tuple[str, str | None]:
    """The run command and the example script that reads its directory (None: the run's table)."""
    run_part, _, script = command.partition(THEN)
    return run_part, script or None


def table_rows(body: str, titled: bool = True) -> list[list[str]]:
    """The rows (epoch first) of a block's table; ValueError naming what is malformed. `titled`:
    the run's summary table (its title line first), else an example script's table (header first)."""
    lines = textwrap.dedent(body).strip("\n").splitlines()
    if len(lines) < 3 + titled or lines[0] != "```" or lines[-1] != "```":
        raise ValueError("must be one fenced code block (``` ... ```)")
    if titled:
        title, header, *rows = lines[1:-1]
        if title != TITLE:
            raise ValueError(f"first line must be the table's title {TITLE!r}")
    else:
        header, *rows = lines[1:-1]
    columns = header.split()
    if columns[:1] != ["epoch"] or (titled and columns[:2] != ["epoch", "bits"]):
        raise ValueError("the header must be: epoch bits ..." if titled else "the header must be: epoch ...")
    parsed = [row.split() for row in rows]
    for row in parsed:
        if len(row) != len(columns) or not row[0].isdigit():
            raise ValueError(f"row {' '.join(row)!r} does not match the header {' '.join(columns)!r}")
    if not parsed:
        raise ValueError("has no rows")
    return parsed


def check(files: list[Path], bodies: bool = True) -> list[str]:
    """What is wrong with the markers and commands and (`bodies`) the tables between them."""
    problems = []
    for path in files:
        text = path.read_text()
        if text.count("<!-- regenerate:") != len(blocks(text)) or text.count("<!-- /regenerate -->") != len(blocks(text)):
            problems.append(f"{path}: unpaired <!-- regenerate: ... --> / <!-- /regenerate --> markers")
        for match in blocks(text):
            run_part, script = parts(match["command"])
            if not run_part.startswith(PREFIX):
                problems.append(f"{path}: {match['command']!r} is not a `{PREFIX} ...` command")
            if script is not None and (not script.startswith(SCRIPTS) or RUN_DIR not in script):
                problems.append(f"{path}: {script!r} must be `{SCRIPTS}SCRIPT.py {RUN_DIR} ...`")
            try:
                if bodies:
                    table_rows(match["body"], titled=script is None)
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
    """Run `command` as written (plus `extra` overrides on the run) and return its table."""
    run_part, script = parts(command)
    args = shlex.split(run_part)[len(PREFIX.split()):]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "ACTIVATION_HASH_OUTPUT": out}
        proc = subprocess.run([sys.executable, "-m", "activation_hash", *args, *extra], cwd=REPO, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{run_part} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
        (found,) = Path(out).rglob("encoding.jsonl")
        if script is None:
            return render([json.loads(line) for line in found.read_text().splitlines()])
        argv = [str(found.parent) if a == RUN_DIR else a for a in shlex.split(script)[1:]]
        proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
        return "\n".join(line.rstrip() for line in proc.stdout.strip("\n").splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that every block is well formed")
    parser.add_argument("--files", nargs="+", type=Path, default=FILES)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra override for every command (tests)")
    parser.add_argument("--only", metavar="TEXT", help="rewrite only the blocks whose command contains TEXT")
    args = parser.parse_args(argv)
    problems = check(args.files, bodies=args.check)  # a block about to be rewritten may be empty
    if problems or args.check:
        print("\n".join(problems) or f"ok: {sum(len(blocks(p.read_text())) for p in args.files)} regenerated blocks")
        return 1 if problems else 0
    chosen = {path: [m["command"] for m in blocks(path.read_text()) if not args.only or args.only in m["command"]]
              for path in args.files}
    tables: dict[str, str] = {}
    for command in dict.fromkeys(c for commands in chosen.values() for c in commands):
        print(f"running: {command} {' '.join(args.set)}".rstrip(), flush=True)
        tables[command] = run(command, args.set)
    for path, commands in chosen.items():
        text = path.read_text()  # read again after the runs: edits made meanwhile stay
        new = BLOCK.sub(lambda m: m.group(0) if m["command"] not in commands else textwrap.indent(
            f"<!-- regenerate: {m['command']} -->\n```\n{tables[m['command']]}\n```\n<!-- /regenerate -->", m["indent"]),
            text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
