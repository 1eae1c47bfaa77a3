"""Numbers shown in the docs are regenerated from the command shown beside them (docs/regenerate.py):
the blocks are well formed, their rows are the captures that command schedules, the command is
visible next to them, and the script rewrites a block from a (tiny) run and nothing else."""

from __future__ import annotations

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
    cfg = compose_config(shlex.split(block["command"])[3:], output_dir=tmp_path)
    rows = regenerate.table_rows(block["body"])
    assert [int(r[0]) for r in rows] == capture_epochs(cfg.codes.epochs, cfg.trainer.max_epochs)
    # the command is shown, not only named in the (invisible) marker: in the text just above it
    text = path.read_text()
    above = "\n".join(text[:block.start()].splitlines()[-15:])
    assert block["command"] in above, f"{path.name}: show `{block['command']}` beside its table"


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


def test_a_malformed_block_is_named() -> None:
    body = "```\nsomething else\n epoch bits\n     0  184\n```\n"
    with pytest.raises(ValueError, match="title"):
        regenerate.table_rows(body)
