"""The extension examples of docs/extending.md run end to end as written, with tiny settings added
(epochs, sizes): the commands are read from the page, not copied here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activation_hash.__main__ import append_optional_groups
from tests.conftest import REPO, TINY, compose_config
from tests.test_readme_commands import apply_environment, readme_commands, split_command

EXTENDING = REPO / "docs" / "extending.md"
SMALL = [o for o in TINY if not o.startswith("model.")] + ["codes.save=false"]


def documented(fragment: str) -> list[str]:
    commands = [command for _, command, error in readme_commands(EXTENDING) if fragment in command and not error]
    assert commands, f"docs/extending.md shows no command with {fragment}"
    return commands


def run_as_documented(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    from activation_hash.run import run
    env, words = split_command(command, tmp_path)
    apply_environment(env, monkeypatch)
    words = append_optional_groups(["prog", *words])[1:]
    result = run(compose_config([*words, *SMALL], output_dir=tmp_path / "run"))
    return [json.loads(line) for line in (Path(result["run_dir"]) / "encoding.jsonl").read_text().splitlines()]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("command", documented("my_pkg.nets.MyNet"))
def test_the_custom_network_example_runs_as_written(command: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rows = run_as_documented(command, tmp_path, monkeypatch)
    hidden = 64 if "hidden=64" in command else 32      # MyNet's default, or what the command sets
    assert [r["epoch"] for r in rows if r["split"] == "test"] == [0, 1, 2]
    assert {r["n_bits"] for r in rows} == {2 * hidden}   # both functional ReLUs traced and captured
