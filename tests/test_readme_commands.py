"""Every `python -m activation_hash ...` command in the code blocks of the README and of the
documentation site (docs/) works when pasted: the program's own whole-command check (every job of a
sweep composed and checked) accepts it; a command documented as an error
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
ENV_PREFIX = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*" + re.escape(PREFIX))   # `PYTHONPATH=x python -m ...`


def split_command(command: str, home: Path) -> tuple[dict[str, str], list[str]]:
    """A documented command's environment assignments and its arguments after `python -m pkg`."""
    words = shlex.split(command.replace("$HOME", str(home)), comments=True)
    env = {}
    while words and "=" in words[0] and words[0] != "python":
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words[3:]


def apply_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """As the shell would: PYTHONPATH entries (relative to the repository root) become importable."""
    for name, value in env.items():
        if name == "PYTHONPATH":
            for entry in reversed(value.split(":")):
                monkeypatch.syspath_prepend(str(REPO / entry))
        else:
            monkeypatch.setenv(name, value)


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
        if not ENV_PREFIX.match(text):
            continue
        error = re.search(r"#\s*error:\s*(.+)$", text)
        found.append((number, text, error.group(1).strip() if error else None))
    return found


@pytest.fixture(autouse=True)
def forget_plugin_families():
    """A documented `metrics.plugins=[...]` registers its family in this process: unregister it
    after the test, so later tests (the generated reference lists the families) see the built-in ones."""
    from activation_hash.metrics import registry
    before = set(registry.families())
    yield
    for name in set(registry.families()) - before:
        registry.unregister(name)


COMMANDS = [(f"{path.relative_to(REPO)}:{n}", command, error)
            for path in DOCUMENTS for n, command, error in readme_commands(path)]


def test_the_readme_has_commands_to_check() -> None:
    assert len(readme_commands()) >= 10 and any(error for _, _, error in COMMANDS)


@pytest.mark.parametrize("line, command, error", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_a_readme_command_composes_as_pasted(line: str, command: str, error: str | None, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked as `python -m activation_hash` checks a command before Hydra runs it (every job of
    a sweep composed and checked); whether its data is on disk is not asked (tests/test_data_check.py)."""
    env, words = split_command(command, tmp_path)
    apply_environment(env, monkeypatch)
    if any(w.lstrip("+").startswith("hparams_search=optuna") for w in words):
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    monkeypatch.setenv("ACTIVATION_HASH_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setattr(validate, "check_data_on_disk", lambda cfg: None)
    # as `python -m activation_hash` reads them: experiment=NAME is +experiment=NAME
    words = append_optional_groups(["prog", *words])[1:]
    if error is None:
        check_command(words)
        return
    with pytest.raises(ConfigError) as raised:   # a documented error: the program's own pre-check prints it
        check_command(words)
    pattern = ".*".join(re.escape(part.strip()) for part in error.split("..."))   # `...` elides a part
    assert re.search(pattern, str(raised.value).replace("error: ", ""), re.S), (error, str(raised.value))
