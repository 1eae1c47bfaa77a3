"""What a pip user gets: the tested versions stated once, SPDX license metadata and a LICENSE file,
the extras, and a plain `pip install .` that keeps the installed torch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_license_metadata_and_extras() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert {"loggers", "optuna", "dev", "docs"} <= set(project["optional-dependencies"])
    build = _pyproject()["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)


def test_the_tested_torch_is_the_same_in_makefile_constraints_and_readme() -> None:
    constraints = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                       if line and not line.startswith("#"))
    make_torch = re.search(r"^TORCH \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert constraints["torch"] == make_torch
    assert f"torch=={make_torch}" in (REPO / "README.md").read_text()
    import torch
    assert torch.__version__.split("+")[0] == make_torch  # what this test suite runs on


@pytest.mark.slow
def test_plain_pip_install_keeps_the_installed_torch(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE", "activation_hash", "hydra_plugins", "conf"):
        path = REPO / name
        (shutil.copytree(path, src / name, symlinks=True) if path.is_dir() else
         (src.mkdir(exist_ok=True), shutil.copy(path, src / name)))
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--no-index",
                          str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (would,) = [line for line in out.stdout.splitlines() if line.startswith("Would install")]
    assert would.split()[2:] == ["activation-hash-0.1.0"]  # nothing else: no torch, no CUDA wheels
