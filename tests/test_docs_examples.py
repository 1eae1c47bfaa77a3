"""The extension examples of docs/extending.md run end to end as written, with tiny settings added
(epochs, sizes): the commands are read from the page, not copied here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activation_hash.__main__ import append_optional_groups
from tests.conftest import REPO, TINY, compose_config
from tests.test_readme_commands import apply_environment, forget_plugin_families, readme_commands, split_command  # noqa: F401 (autouse fixture)

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


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_metric_plugin_example_runs_from_the_command_line(tmp_path: Path) -> None:
    """As pasted into a shell (PYTHONPATH=docs/examples python -m activation_hash ...), through the
    whole-command pre-check, which must load metrics.plugins before it checks metrics.which."""
    import os
    import shlex
    import subprocess
    import sys
    command = documented("my_pkg.agreement")[0]
    env, words = split_command(command, tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "activation_hash", *words, *SMALL, f"hydra.run.dir={out}"],
                          cwd=REPO, env={**os.environ, **env, "PYTHONPATH": env["PYTHONPATH"]},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(words)}\n{proc.stderr[-2000:]}"
    rows = [json.loads(line) for line in (out / "encoding.jsonl").read_text().splitlines()]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert len(test_rows) == 3 and all("test/redundancy" in r for r in test_rows)
    for row in test_rows:   # logits' agreement with the labels is the network's own test accuracy
        assert row["test/agreement"] == pytest.approx(row["test/net_acc"])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("command", [c for c in documented("my_pkg.agreement") if "scale=" in c])
def test_the_metric_plugin_takes_its_options(command: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    scale = float(command.rsplit("scale=", 1)[1].split()[0])
    rows = [r for r in run_as_documented(command, tmp_path, monkeypatch) if r["split"] == "test"]
    assert len(rows) == 3 and all("test/redundancy" not in r for r in rows)
    for row in rows:
        assert row["test/agreement"] == pytest.approx(scale * row["test/net_acc"])
