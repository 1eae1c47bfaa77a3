"""Docs that cannot drift: the configuration reference is regenerated from conf/ and the schema, and
the documentation site builds with no dead link (`mkdocs build --strict`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from activation_hash.conf_reference import _comment, main as reference_main, render
from tests.conftest import REPO


def test_configuration_reference_is_up_to_date() -> None:
    assert reference_main(["--check", "--out", str(REPO / "docs" / "reference" / "configuration.md")]) == 0


def test_reference_lists_every_option_and_says_what_the_schema_allows() -> None:
    text = render()
    for path in (REPO / "conf" / "logger").glob("*.yaml"):
        assert f"| {path.stem} |" in text or f"| **{path.stem}** |" in text
    assert "| `model.width` | `200` | must be an int >= 1 |" in text


def test_a_description_is_the_first_sentence_of_the_leading_comment(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("# @package _global_\n# One thing, described\n# over two lines. More.\n#   python -m x\nkey: 1\n")
    assert _comment(f) == "One thing, described over two lines."


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()


WALL_TIME = re.compile(r"(?<![\w.])~?\d[\d,.]*(?: ?[–-] ?\d[\d.]*)? ?(?:ms|s|sec|min|minutes|h|hours|seconds)\b")


def wall_times(text: str) -> list[str]:
    """Durations written in prose (`70 s`, `4 min 45 s`, `~4 h`, `2.5–7 h`), outside code blocks."""
    prose = re.sub(r"^( *)```.*?^\1```", "", text, flags=re.S | re.M)
    return WALL_TIME.findall(prose)


def test_timings_live_in_bench_readme_not_in_the_user_docs() -> None:
    """A time measured on one machine goes to bench/README.md under its hardware header, with its
    command; the user docs link there (or say what the plan command estimates)."""
    found = {str(p.relative_to(REPO)): times for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
             if (times := wall_times(p.read_text()))}
    assert found == {}, found
    assert wall_times("the study took 4 min 45 s, ~4 h or 2.5–7 h, 0.8 s a capture\n```\n70 s\n```\n") == \
        ["4 min", "45 s", "~4 h", "2.5–7 h", "0.8 s"]
    assert wall_times("3 epochs, 2 seeds, 10 steps, 12 runs, 1e-3, 5,000 images") == []
