"""Every `python -m activation_hash ...` command in the code blocks of the README and of the
documentation site (docs/) works when pasted: its overrides parse in Hydra's grammar (sweeps
included), compose, and pass the typed schema; a command documented as an error
(`# error: MESSAGE`) fails with that message instead."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from activation_hash import validate
from activation_hash.__main__ import append_optional_groups
from activation_hash.schema import ConfigError
from activation_hash.validate import check_command
from tests.conftest import REPO

PREFIX = "python -m activation_hash "


DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def readme_commands(path: Path = REPO / "README.md") -> list[tuple[int, str, str | None]]:
    """(line number, command, expected error or None) for each command in a fenced code block."""
    lines = path.read_text().splitlines()
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


COMMANDS = [(f"{path.relative_to(REPO)}:{n}", command, error)
            for path in DOCUMENTS for n, command, error in readme_commands(path)]


def test_the_readme_has_commands_to_check() -> None:
    assert len(readme_commands()) >= 10 and any(error for _, _, error in COMMANDS)


STUB = """import torch.nn as nn


class MyNet(nn.Module):  # the docs' example user network: model.network._target_=my_pkg.nets.MyNet
    def __init__(self, num_classes, input_shape, **kwargs):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(num_classes))

    def forward(self, x):
        return self.body(x)
"""


@pytest.mark.parametrize("line, command, error", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_a_readme_command_composes_as_pasted(line: str, command: str, error: str | None, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked as `python -m activation_hash` checks a command before Hydra runs it (every job of
    a sweep composed and checked); whether its data is on disk is not asked (tests/test_data_check.py)."""
    words = shlex.split(command.replace("$HOME", str(tmp_path)), comments=True)[3:]   # after python -m pkg
    if any(w.lstrip("+").startswith("hparams_search=optuna") for w in words):
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    if any("my_pkg." in w for w in words):  # the docs' example network, as a user's package would hold it
        (tmp_path / "my_pkg").mkdir()
        (tmp_path / "my_pkg" / "__init__.py").write_text("")
        (tmp_path / "my_pkg" / "nets.py").write_text(STUB)
        monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ACTIVATION_HASH_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setattr(validate, "check_data_on_disk", lambda cfg: None)
    # as `python -m activation_hash` reads them: experiment=NAME is +experiment=NAME
    words = append_optional_groups(words)
    if error is None:
        check_command(words)
    else:
        with pytest.raises(ConfigError) as raised:
            check_command(words)
        message = str(raised.value).replace("error: ", "")
        parts = [p.strip() for p in error.split("...") if p.strip()]  # "..." stands for text left out
        at = 0
        for part in parts:
            at = message.find(part, at)
            assert at >= 0, (part, message)
