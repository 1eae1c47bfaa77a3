"""Rewrite the numbers the docs show from the command shown beside them, so none is typed by hand.

A regenerated block is a table between two markers that name its command, a fenced code block
(Markdown for a report's table, below):

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
row starting `epoch`, a row per capture). A sweep (`-m`) shows each grid point's mean over seeds of
its runs' last capture (result.json), a row per value of the swept key other than `seed`.

A study's report table: a command may instead go on with `&& report: FILE`,

    <!-- regenerate: python -m activation_hash +experiment=dlgn_vs_relu -m && report: dlgn_vs_relu_mnist_table.md -->

    | width | model | epoch | runs | test redundancy | ... |
    |---:|---|---:|---:|---:|...|
    | 10 | ReLU MLP | 4 | 2 | ... |

    <!-- /regenerate -->

which runs the command (a sweep or a single run), then `python -m activation_hash.analysis report
DIR --out REPORT` on the runs it wrote (DIR: the temporary output, which holds only them), and puts
REPORT/FILE between the markers: a Markdown file (`.md`, the report's tables) as Markdown, its
`# title` line dropped (the page has its own headings) and blank lines around it so the page renders
the table; any other file (a `.csv`) as a fenced code block. FILE is a name the report writes (see
activation_hash/analysis/report.py); the blocks of one command run it and its report once. Nothing
outside the markers changes.

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
SWEEP_TITLE = "Last capture of each run, mean over seeds"
THEN = " && "  # a run, then an example script on its directory
SCRIPTS = "python docs/examples/"
REPORT = "report: "  # a run, then the report on its runs: `RUN && report: FILE`
REPORT_COMMAND = "python -m activation_hash.analysis report"  # what the docs show beside a report block
RUN_DIR = "outputs/runs/DATE/TIME"  # what the docs show for "the run directory printed above"


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def parts(command: str) -> tuple[str, str | None]:
    """The run command and the example script that reads its directory (None: the run's table)."""
    run_part, _, script = command.partition(THEN)
    return run_part, script or None


def kind(command: str) -> str:
    """`run` (one run's summary table), `script` (an example script's table), `sweep` (-m) or
    `report` (a file of the report on the command's runs)."""
    run_part, script = parts(command)
    if script is not None:
        return "report" if script.startswith(REPORT) else "script"
    return "sweep" if {"-m", "--multirun"} & set(shlex.split(run_part)[len(PREFIX.split()):]) else "run"


def table_rows(body: str, titled: bool | str = True) -> list[list[str]]:
    """The rows (epoch first, or the swept value first for a sweep) of a block's table; ValueError
    naming what is malformed. `titled`: True or "run" for a run's summary table (its title line
    first), "sweep" for a sweep's table, False or "script" for an example script's (header first)."""
    block = {True: "run", False: "script"}.get(titled, titled)
    lines = textwrap.dedent(body).strip("\n").splitlines()
    if len(lines) < 3 + (block != "script") or lines[0] != "```" or lines[-1] != "```":
        raise ValueError("must be one fenced code block (``` ... ```)")
    if block == "script":
        header, *rows = lines[1:-1]
    else:
        title, header, *rows = lines[1:-1]
        want = TITLE if block == "run" else SWEEP_TITLE
        if title != want:
            raise ValueError(f"first line must be the table's title {want!r}")
    columns = header.split()
    if block == "run" and columns[:2] != ["epoch", "bits"]:
        raise ValueError("the header must be: epoch bits ...")
    if block == "script" and columns[:1] != ["epoch"]:
        raise ValueError("the header must be: epoch ...")
    if block == "sweep" and columns[1:2] != ["runs"]:
        raise ValueError("the header must be: KEY runs ...")
    parsed = [row.split() for row in rows]
    for row in parsed:
        if len(row) != len(columns) or not (row[0].isdigit() or block == "sweep"):
            raise ValueError(f"row {' '.join(row)!r} does not match the header {' '.join(columns)!r}")
    if not parsed:
        raise ValueError("has no rows")
    return parsed


def report_file(command: str) -> str:
    """The report file a `RUN && report: FILE` block shows."""
    return parts(command)[1][len(REPORT):].strip()


def markdown_rows(body: str) -> list[list[str]]:
    """The body rows (cells) of a report block's Markdown table; ValueError naming what is malformed."""
    lines = [line.strip() for line in textwrap.dedent(body).strip("\n").splitlines()]
    if not lines or not all(line.startswith("|") for line in lines):
        raise ValueError("must be one Markdown table (| ... | rows one after the other, blank lines around)")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    if len(cells) < 3 or not all(c and set(c) <= set(":-") for c in cells[1]):
        raise ValueError("the table needs a header row, a |---| row and at least one row")
    for row in cells[1:]:
        if len(row) != len(cells[0]):
            raise ValueError(f"row {' | '.join(row)!r} does not match the header {' | '.join(cells[0])!r}")
    return cells[2:]


def block_rows(body: str, command: str) -> list[list[str]]:
    """The rows of a block's table, read as its command's kind writes it."""
    if kind(command) == "report":
        if report_file(command).endswith(".md"):
            return markdown_rows(body)
        lines = textwrap.dedent(body).strip("\n").splitlines()
        if len(lines) < 4 or lines[0] != "```" or lines[-1] != "```":
            raise ValueError("must be one fenced code block (``` ... ```) holding the file: a header and rows")
        return [line.split(",") for line in lines[2:-1]]
    return table_rows(body, titled=kind(command))


def table_header(body: str) -> list[str]:
    """The column names of a block's table (the line after the title, or the first)."""
    lines = textwrap.dedent(body).strip("\n").splitlines()[1:-1]
    return (lines[1] if lines and lines[0] in (TITLE, SWEEP_TITLE) else lines[0]).split()


def sweep_table(out: Path) -> str:
    """Each grid point's mean (over seeds) of its runs' last capture, from result.json and the
    job's .hydra/overrides.yaml; a row per value of the swept key (one key besides seed)."""
    import statistics

    import yaml

    from activation_hash.summary import COLUMNS
    runs = []
    for result in sorted(out.rglob("result.json")):
        overrides = yaml.safe_load((result.parent / ".hydra" / "overrides.yaml").read_text())
        runs.append((dict(o.lstrip("+").split("=", 1) for o in overrides), json.loads(result.read_text())))
    keys = [k for k in dict.fromkeys(k for o, _ in runs for k in o) if k != "seed"
            and len({o.get(k) for o, _ in runs}) > 1]
    if len(keys) != 1:
        raise SystemExit(f"a sweep block needs one swept key besides seed; this sweep sweeps {keys or 'none'}")
    (key,) = keys
    values = sorted({o[key] for o, _ in runs}, key=lambda v: (float(v) if v.replace(".", "", 1).isdigit() else v))
    present = [(m, title) for m, title in COLUMNS if m.startswith("test/") and any(m in r for _, r in runs)]
    lines = [SWEEP_TITLE, "  ".join([f"{key:>11}", "runs", *(f"{t:>7}" for _, t in present)])]
    for value in values:
        results = [r for o, r in runs if o[key] == value]
        means = [statistics.mean(r[m] for r in results if r.get(m) is not None) if any(r.get(m) is not None for r in results)
                 else None for m, _ in present]
        lines.append("  ".join([f"{value:>11}", f"{len(results):>4}",
                                *(f"{x:>7.3f}" if x is not None else f"{'-':>7}" for x in means)]))
    return "\n".join(lines)


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
            if kind(match["command"]) == "report":
                name = report_file(match["command"])
                if not name or Path(name).name != name or not name.endswith((".md", ".csv")):
                    problems.append(f"{path}: {script!r} must be `{REPORT}FILE.md` (or .csv): a file the report writes")
            elif script is not None and (not script.startswith(SCRIPTS) or RUN_DIR not in script):
                problems.append(f"{path}: {script!r} must be `{SCRIPTS}SCRIPT.py {RUN_DIR} ...` or `{REPORT}FILE`")
            try:
                if bodies:
                    block_rows(match["body"], match["command"])
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


def report_tables(run_part: str, names: list[str], extra: list[str]) -> dict[str, str]:
    """Run `run_part` (plus `extra`), then the report on its runs; each named report file as the
    block shows it (Markdown: title dropped, blank lines around; else a fenced code block)."""
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as report:
        env = _run(run_part, extra, out)
        proc = subprocess.run([sys.executable, "-m", "activation_hash.analysis", "report", out, "--out", report],
                              cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{REPORT_COMMAND} (on {run_part}) failed:\n{proc.stderr[-3000:]}")
        tables = {}
        for name in names:
            path = Path(report) / name
            if not path.is_file():
                written = sorted(p.name for p in Path(report).iterdir() if p.suffix in (".md", ".csv"))
                raise SystemExit(f"error: report={name}: the report on `{run_part}` did not write it; "
                                 f"it wrote: {', '.join(written)}")
            text = path.read_text().strip("\n")
            if name.endswith(".md"):
                lines = text.splitlines()
                if lines and lines[0].startswith("# "):
                    lines = lines[1:]
                tables[name] = "\n" + "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"
            else:
                tables[name] = f"```\n{text}\n```"
        return tables


def _run(run_part: str, extra: list[str], out: str) -> dict[str, str]:
    """Run `run_part` (plus `extra` overrides) with its output in `out`; the environment it ran in."""
    args = shlex.split(run_part)[len(PREFIX.split()):]
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": out}
    proc = subprocess.run([sys.executable, "-m", "activation_hash", *args, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{run_part} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return env


def run(command: str, extra: list[str]) -> str:
    """Run `command` as written (plus `extra` overrides on the run) and return its table (a report
    block: the file as the block shows it, see `report_tables`)."""
    run_part, script = parts(command)
    if kind(command) == "report":
        return report_tables(run_part, [report_file(command)], extra)[report_file(command)]
    with tempfile.TemporaryDirectory() as out:
        env = _run(run_part, extra, out)
        if kind(command) == "sweep":
            return sweep_table(Path(out))
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
    commands = list(dict.fromkeys(c for commands in chosen.values() for c in commands))
    reports: dict[str, list[str]] = {}  # one run and one report per run command, whatever files its blocks show
    for command in commands:
        if kind(command) == "report":
            reports.setdefault(parts(command)[0], []).append(command)
            continue
        print(f"running: {command} {' '.join(args.set)}".rstrip(), flush=True)
        tables[command] = f"```\n{run(command, args.set)}\n```"
    for run_part, shown in reports.items():
        print(f"running: {' '.join([run_part, *args.set])} && {REPORT_COMMAND} ({', '.join(map(report_file, shown))})",
              flush=True)
        files = report_tables(run_part, list(dict.fromkeys(map(report_file, shown))), args.set)
        tables.update({command: files[report_file(command)] for command in shown})
    for path, commands in chosen.items():
        text = path.read_text()  # read again after the runs: edits made meanwhile stay
        new = BLOCK.sub(lambda m: m.group(0) if m["command"] not in commands else textwrap.indent(
            f"<!-- regenerate: {m['command']} -->\n{tables[m['command']]}\n<!-- /regenerate -->", m["indent"]),
            text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
