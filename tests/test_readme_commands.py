"""Every `python -m activation_hash ...` command in the README's code blocks works when pasted:
its overrides parse in Hydra's grammar (sweeps included), compose, and pass the typed schema;
a command documented as an error (`# error: MESSAGE`) fails with that message instead."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from activation_hash.schema import ConfigError
from activation_hash.validate import check_config
from tests.conftest import REPO, compose_config

PREFIX = "python -m activation_hash "


def readme_commands() -> list[tuple[int, str, str | None]]:
    """(line number, command, expected error or None) for each command in a fenced code block."""
    lines = (REPO / "README.md").read_text().splitlines()
    found, in_block, pending = [], False, ""
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if not text.startswith(PREFIX):
            continue
        error = re.search(r"#\s*error:\s*(.+)$", text)
        found.append((number, text, error.group(1).strip() if error else None))
    return found


COMMANDS = readme_commands()


def test_the_readme_has_commands_to_check() -> None:
    assert len(COMMANDS) >= 15 and any(error for _, _, error in COMMANDS)


@pytest.mark.parametrize("line, command, error", COMMANDS, ids=[f"README:{n}" for n, _, _ in COMMANDS])
def test_a_readme_command_composes_as_pasted(line: int, command: str, error: str | None, tmp_path: Path) -> None:
    words = shlex.split(command.replace("$HOME", str(tmp_path)), comments=True)[3:]   # after python -m pkg
    overrides = [w for w in words if w not in ("-m", "--multirun")]
    parsed = OverridesParser.create().parse_overrides(overrides)      # Hydra's grammar, as on the shell
    first = []                                                         # a sweep's first job stands for all
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
            text = f"{override.get_key_element()}={value}"
        first.append(text)
    cfg = compose_config(first, output_dir=tmp_path / "run")
    if error is None:
        check_config(cfg)
    else:
        with pytest.raises(ConfigError) as raised:
            check_config(cfg)
        assert error in str(raised.value).replace("error: ", "")
