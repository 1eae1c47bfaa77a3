"""The one-screen summary a sweep (`-m`) ends with, and the command that makes its report.

A Hydra callback (conf/config.yaml: `hydra.callbacks.sweep_summary`), so every launcher gets it;
it reads only the run directories' result.json files (no torch, nothing of the run loaded).

    12 runs in outputs/studies/model_size/smoke: 12 finished, 0 without a result
    test/knn_acc  min 0.812  median 0.901  max 0.934  (best: model.width=40,seed=1)
    report: make report PROFILE=smoke   (or python -m activation_hash.analysis report DIR --out reports/smoke)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def summary_lines(sweep_dir: Path, metric: str | None, profile: str | None = None,
                  study_layout: bool = False) -> list[str]:
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()) if sweep_dir.is_dir() else []
    results: dict[Path, dict[str, Any]] = {}
    for run in runs:
        try:
            results[run] = json.loads((run / "result.json").read_text())
        except (OSError, ValueError):
            pass
    lines = [f"{len(runs)} runs in {sweep_dir}: {len(results)} finished, {len(runs) - len(results)} without a result"]
    values = {run: r[metric] for run, r in results.items() if metric and isinstance(r.get(metric), (int, float))}
    if values:
        best = max(values, key=values.get)
        lines.append(f"{metric}  min {min(values.values()):.3f}  median {statistics.median(values.values()):.3f}  "
                     f"max {max(values.values()):.3f}  (best: {best.name})")
    out = f"reports/{profile or sweep_dir.name}"
    command = f"python -m activation_hash.analysis report {sweep_dir} --out {out}"
    lines.append(f"report: make report PROFILE={profile}   (or {command})" if study_layout and profile
                 else f"report: {command}")
    return lines


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        metric = OmegaConf.select(config, "optimized_metric", default=None)
        profile = OmegaConf.select(config, "profile.name", default=None)
        study_layout = "studies" in sweep_dir.parts
        print("\n".join(["", *summary_lines(sweep_dir, metric, profile, study_layout)]), flush=True)
