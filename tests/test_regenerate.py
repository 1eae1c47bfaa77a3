"""Numbers shown in the docs are regenerated from the command shown beside them (docs/regenerate.py):
the blocks are well formed, their rows are the captures that command schedules, the command is
visible next to them, and the script rewrites a block from a (tiny) run and nothing else."""

from __future__ import annotations

import collections
import functools
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from activation_hash.codes.schedule import capture_epochs
from tests.conftest import REPO, compose_config

spec = importlib.util.spec_from_file_location("regenerate", REPO / "docs" / "regenerate.py")
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)

BLOCKS = [(path, m) for path in regenerate.FILES for m in regenerate.blocks(path.read_text())]


def test_the_readme_opening_table_is_a_regenerated_block() -> None:
    assert any(path.name == "README.md" for path, _ in BLOCKS)
    assert regenerate.main(["--check"]) == 0


@pytest.mark.parametrize("path, block", BLOCKS, ids=[f"{p.relative_to(REPO)}:{m['command']}" for p, m in BLOCKS])
def test_a_block_shows_what_its_command_captures(path: Path, block: re.Match, tmp_path: Path) -> None:
    run_part, script = regenerate.parts(block["command"])
    rows = regenerate.block_rows(block["body"], block["command"])
    if regenerate.kind(block["command"]) == "report":  # a table the report writes on the jobs the command runs
        study, grid = study_jobs(run_part)
        assert rows and regenerate.report_file(block["command"]) in report_tables(study, grid)
        header = [c.strip() for c in block["body"].strip().splitlines()[0].strip("|").split("|")]
        if "runs" in header:  # each of the command's runs counted in one row
            assert sum(int(r[header.index("runs")]) for r in rows) == len(grid)
        script = f"{regenerate.REPORT_COMMAND} "  # shown beside it, and the file's name too (below)
    elif regenerate.kind(block["command"]) == "sweep":  # a row per grid value, with its number of runs
        assert [(r[0], int(r[1])) for r in rows] == grid_points(run_part, regenerate.table_header(block["body"])[0])
    else:
        cfg = compose_config(shlex.split(run_part)[3:], output_dir=tmp_path)
        assert [int(r[0]) for r in rows] == capture_epochs(cfg.codes.epochs, cfg.trainer.max_epochs)
    # the command is shown, not only named in the (invisible) marker: in the text just above it
    text = path.read_text()
    above = "\n".join(text[:block.start()].splitlines()[-15:])
    shown = (run_part, script, regenerate.report_file(block["command"]) if script == f"{regenerate.REPORT_COMMAND} " else None)
    for command in filter(None, shown):
        assert command in above, f"{path.name}: show `{command}` beside its table"


def study_jobs(command: str) -> tuple[str, list[dict]]:
    """The study `+experiment=NAME -m` names and its jobs (the plan's expansion; they must compose)."""
    from activation_hash.plan.expand import jobs
    args = [a for a in shlex.split(command)[3:] if a not in ("-m", "--multirun")]
    (study,) = [a.split("=", 1)[1] for a in args if a.startswith("+experiment=")]
    profile = next((a.split("=", 1)[1] for a in args if a.startswith("profile=")), "smoke")
    return study, jobs(study, profile, [a for a in args if not a.startswith(("+experiment=", "profile="))])[0]


def report_tables(study: str, grid: list[dict]) -> set[str]:
    """The Markdown tables the report writes on a study's jobs: its table recipes for the study
    (conf/report/default.yaml), and per data set the DLGN section's (a study with DLGN runs) and
    the retrieval section's."""
    from activation_hash.analysis.report import load_config
    names = {job["data"]["name"] for job in grid}
    cfg = load_config()
    tables = {f"{r['name']}.md" for r in cfg.figures if r.get("kind") == "table" and r.get("study") == study
              and (r.get("filter") or {}).get("data.name", next(iter(names))) in names}
    if any(str(job["model"].get("_target_", "")).endswith(".DLGN") for job in grid):  # as dlgn_figures.is_dlgn
        tables |= {f"{study if study.startswith('dlgn') else 'dlgn_' + study}_{name}_table.md" for name in names}
    if study == cfg.retrieval.get("study", "retrieval"):
        tables |= {f"retrieval_{name}_table.md" for name in names}
    return tables


def grid_points(command: str, key: str) -> list[tuple[str, int]]:
    """(value of `key`, number of jobs) over the jobs `+experiment=NAME -m` runs (the plan's expansion)."""
    from activation_hash.plan.expand import jobs
    args = [a for a in shlex.split(command)[3:] if a not in ("-m", "--multirun")]
    (study,) = [a.split("=", 1)[1] for a in args if a.startswith("+experiment=")]
    profile = next((a.split("=", 1)[1] for a in args if a.startswith("profile=")), "smoke")
    rest = [a for a in args if not a.startswith(("+experiment=", "profile="))]
    values = [str(functools.reduce(lambda node, part: node[part], key.split("."), job)) for job in jobs(study, profile, rest)[0]]
    return sorted(collections.Counter(values).items(), key=lambda kv: float(kv[0]))


def test_a_sweep_block_is_each_grid_points_mean_over_seeds(tmp_path: Path) -> None:
    copy = tmp_path / "page.md"
    copy.write_text("<!-- regenerate: python -m activation_hash model.width=8,16 -m -->\n```\n```\n<!-- /regenerate -->\n")
    assert regenerate.main(["--files", str(copy), "--set", "trainer.max_epochs=1", "--set", "codes.epochs=[1]",
                            "--set", "data.train_size=300", "--set", "progress_bar=none", "--set", "seed=0,1"]) == 0
    (block,) = regenerate.blocks(copy.read_text())
    rows = regenerate.table_rows(block["body"], titled="sweep")
    assert regenerate.table_header(block["body"])[:3] == ["model.width", "runs", "red.te"]
    assert [(r[0], r[1]) for r in rows] == [("8", "2"), ("16", "2")]
    assert all(0 <= float(x) <= 1 for r in rows for x in r[2:])
    assert float(rows[0][2]) > float(rows[1][2])  # 8 units hash 300 digits into fewer codes than 16


def test_the_script_rewrites_a_block_from_a_run_and_nothing_else(tmp_path: Path) -> None:
    copy = tmp_path / "page.md"
    stale = "before\n" + BLOCKS[0][1].group(0) + "\nafter\n"
    copy.write_text(stale)
    assert regenerate.main(["--files", str(copy), "--set", "trainer.max_epochs=2", "--set", "codes.epochs=[0,1,2]",
                            "--set", "data.train_size=300", "--set", "progress_bar=none"]) == 0
    text = copy.read_text()
    (block,) = regenerate.blocks(text)
    rows = regenerate.table_rows(block["body"])
    assert [int(r[0]) for r in rows] == [0, 1, 2] and text != stale
    assert text[:block.start()] == "before\n" and text[block.end():] == "\nafter\n"
    assert block["command"] == BLOCKS[0][1]["command"]


def test_a_script_block_is_rewritten_from_the_runs_directory(tmp_path: Path) -> None:
    """`RUN && python docs/examples/SCRIPT.py outputs/runs/DATE/TIME`: the script's table on the
    run's own directory, inside an indented block (a list item) that stays indented."""
    (command,) = {m["command"] for _, m in BLOCKS if regenerate.kind(m["command"]) == "script"}
    copy = tmp_path / "page.md"
    copy.write_text(f"- item\n\n  <!-- regenerate: {command} -->\n  ```\n  ```\n  <!-- /regenerate -->\nafter\n")
    assert regenerate.main(["--files", str(copy), "--check"]) == 1  # an empty block is not a table
    assert regenerate.main(["--files", str(copy), "--set", "trainer.max_epochs=2", "--set", "codes.epochs=[0,2]",
                            "--set", "data.train_size=300", "--set", "progress_bar=none"]) == 0
    text = copy.read_text()
    (block,) = regenerate.blocks(text)
    assert block["indent"] == "  " and all(line.startswith("  ") for line in block.group(0).splitlines())
    rows = regenerate.table_rows(block["body"], titled=False)
    assert [int(r[0]) for r in rows] == [0, 2] and all(0 <= float(r[1]) <= 1 for r in rows)
    assert text.endswith("<!-- /regenerate -->\nafter\n") and regenerate.main(["--files", str(copy), "--check"]) == 0


REPORT_BLOCK = ("python -m activation_hash +experiment=dlgn_vs_relu -m data=digits model=mlp,dlgn model.width=8 "
                "&& report: dlgn_vs_relu_digits_table.md")


def test_a_report_block_is_the_report_file_of_the_commands_runs(tmp_path: Path) -> None:
    """`RUN -m && report: FILE.md`: the sweep (2 tiny runs), the report on them, the file's table as
    Markdown that renders as a table, in an indented block that stays indented; and a `.csv` of the
    same report (the same sweep, run once) as a fenced block."""
    import markdown
    csv = REPORT_BLOCK.replace("_table.md", "_vs_width.csv")
    copy = tmp_path / "page.md"
    copy.write_text(f"- item\n\n  <!-- regenerate: {REPORT_BLOCK} -->\n  <!-- /regenerate -->\n\n"
                    f"<!-- regenerate: {csv} -->\n<!-- /regenerate -->\nafter\n")
    assert regenerate.main(["--files", str(copy), "--check"]) == 1  # an empty block is not a table
    assert regenerate.main(["--files", str(copy), "--set", "trainer.max_epochs=1", "--set", "codes.epochs=[0,1]",
                            "--set", "data.train_size=300", "--set", "data.test_size=100", "--set", "seed=0",
                            "--set", "progress_bar=none"]) == 0
    text = copy.read_text()
    (block, fenced) = regenerate.blocks(text)
    assert block["indent"] == "  " and all(line.startswith("  ") or not line for line in block.group(0).splitlines())
    header = [c.strip() for c in block["body"].strip().splitlines()[0].strip("|").split("|")]
    rows = regenerate.block_rows(block["body"], block["command"])
    assert header[:4] == ["width", "model", "epoch", "runs"] and "test redundancy" in header
    assert [r[:4] for r in rows] == [["8", "ReLU MLP", "1", "1"], ["8", "DLGN", "1", "1"]]  # one run per model, last capture
    assert all(0 <= float(x) <= 1 for r in rows for x in r[4:])
    assert "# Last capture" not in text  # the file's title: the page has its own headings
    assert markdown.markdown(text, extensions=["tables"]).count("<tr>") == 3  # header + 2 rows, rendered as a table
    csv_rows = regenerate.block_rows(fenced["body"], fenced["command"])
    assert fenced["body"].startswith("```\n") and len(csv_rows) >= 2
    assert text.endswith("<!-- /regenerate -->\nafter\n") and regenerate.main(["--files", str(copy), "--check"]) == 0


def test_a_report_block_names_a_file_of_the_report(tmp_path: Path) -> None:
    tables = {name: report_tables(*study_jobs(f"python -m activation_hash +experiment={name} -m"))
              for name in ("dlgn_vs_relu", "retrieval", "binary_encoding", "model_size")}
    assert tables == {"dlgn_vs_relu": {"dlgn_vs_relu_mnist_table.md"}, "retrieval": {"retrieval_mnist_table.md"},
                      "binary_encoding": {"binenc_table.md"}, "model_size": set()}
    page = tmp_path / "page.md"
    for bad in ("report: ", "report: ../x.md", "report: table.png"):
        page.write_text(f"<!-- regenerate: python -m activation_hash -m && {bad} -->\n<!-- /regenerate -->\n")
        assert any("must be `report: FILE.md`" in p for p in regenerate.check([page], bodies=False)), bad
    page.write_text(f"<!-- regenerate: {REPORT_BLOCK} -->\n<!-- /regenerate -->\n")
    assert regenerate.check([page], bodies=False) == []


def test_a_report_file_is_shown_as_the_block_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No run: a stand-in report writes a Markdown table and a CSV; the table loses its `# title`
    line only, the CSV is fenced as written, and a file the report did not write is named with
    the files it did write."""
    import subprocess
    import types

    def report(argv: list[str], **kwargs) -> types.SimpleNamespace:
        out = Path(argv[argv.index("--out") + 1])
        (out / "x_table.md").write_text("# Last capture, x\n\n| a | b |\n|---|---:|\n| 1 | 2.5 ± 0.1 |\n")
        (out / "x.csv").write_text("a,b\n1,2.5\n")
        return types.SimpleNamespace(returncode=0, stderr="")
    monkeypatch.setattr(regenerate, "_run", lambda run_part, extra, out: {})
    monkeypatch.setattr(subprocess, "run", report)
    tables = regenerate.report_tables("python -m activation_hash -m", ["x_table.md", "x.csv"], [])
    assert tables == {"x_table.md": "\n| a | b |\n|---|---:|\n| 1 | 2.5 ± 0.1 |\n", "x.csv": "```\na,b\n1,2.5\n```"}
    assert regenerate.markdown_rows(tables["x_table.md"]) == [["1", "2.5 ± 0.1"]]
    with pytest.raises(SystemExit, match=r"report=y_table.md: .* it wrote: x.csv, x_table.md"):
        regenerate.report_tables("python -m activation_hash -m", ["y_table.md"], [])


def test_a_malformed_report_table_is_named() -> None:
    with pytest.raises(ValueError, match="one Markdown table"):
        regenerate.markdown_rows("\n*caption*\n| a |\n|---|\n| 1 |\n")
    with pytest.raises(ValueError, match="header row"):
        regenerate.markdown_rows("\n| a | b |\n| 1 | 2 |\n")
    with pytest.raises(ValueError, match="does not match the header"):
        regenerate.markdown_rows("\n| a | b |\n|---|---|\n| 1 |\n")


def test_only_rewrites_the_blocks_it_names(tmp_path: Path) -> None:
    copy = tmp_path / "page.md"
    copy.write_text(BLOCKS[0][1].group(0) + "\n")
    assert regenerate.main(["--files", str(copy), "--only", "no such command"]) == 0
    assert copy.read_text() == BLOCKS[0][1].group(0) + "\n"


def test_a_malformed_block_is_named() -> None:
    body = "```\nsomething else\n epoch bits\n     0  184\n```\n"
    with pytest.raises(ValueError, match="title"):
        regenerate.table_rows(body)
    with pytest.raises(ValueError, match="header"):
        regenerate.table_rows("```\n firing entropy\n 0.5 0.5\n```\n", titled=False)
