"""Hydra imports every `hydra_plugins.*` module when any Hydra program starts: the project's
launcher plugin must not import torch, Lightning or scikit-learn there (only when it launches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

SCAN = """
import json, sys
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
names = [p.__name__ for p in Plugins.instance().discover(Launcher)]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning", "sklearn"))
print(json.dumps({"launchers": names, "heavy": heavy}))
"""


def test_plugin_discovery_imports_no_torch_lightning_or_sklearn() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", SCAN], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "BatchedLauncher" in found["launchers"]  # the scan did reach the project's plugin
    assert found["heavy"] == []


def test_the_launcher_still_finds_torch_when_it_runs() -> None:
    from hydra_plugins.activation_hash_batched_launcher import batched_launcher
    assert batched_launcher.resolve_n_jobs(1, gpu_count=0) == 1
    assert isinstance(batched_launcher.torch.cuda.device_count(), int)
