"""`make help` lists every target; `make report` reads the runs where the runs were written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str, **env: str) -> str:
    out = subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_help_lists_every_target() -> None:
    targets = set(re.findall(r"^([a-zA-Z_-]+):", (REPO / "Makefile").read_text(), re.M))
    listed = {line.split()[0] for line in _make("help").splitlines() if line.strip()}
    assert listed == targets - {"$"} and "report" in listed


def test_make_report_honours_activation_hash_output() -> None:
    assert "/elsewhere/studies/*/smoke" in _make("-n", "report", ACTIVATION_HASH_OUTPUT="/elsewhere")
    assert "/mine/studies/*/paper" in _make("-n", "report", "OUTPUT=/mine", "PROFILE=paper",
                                            ACTIVATION_HASH_OUTPUT="/elsewhere")
