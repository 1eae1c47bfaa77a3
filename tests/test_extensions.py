"""Extension points: a metric family and a network probe registered by a user are picked up by
the capture callback without editing it; families get the per-sample extras they ask for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activation_hash.codes import probes as probe_registry
from activation_hash.metrics import registry
from activation_hash.run import run

SEEN: dict[str, object] = {}


def _family(codes: registry.CodeSet, *, my_scale: float = 1.0) -> dict[str, float]:
    SEEN["extras"] = {k: v.shape for k, v in codes.extras.items()}
    SEEN["layers"] = codes.layer_names
    logits = codes.extras["test/logits"]
    return {"test/my_agreement": my_scale * float(np.mean(logits.argmax(1) == codes.test_labels)),
            "test/my_bits": float(codes.n_bits)}


def _probe(model, data, layers, *, n_samples: int = 5):
    x, y = data.test_batch(n_samples)
    (data.out_dir / f"probe-{data.epoch}.txt").write_text(str(len(x)))
    return {"test/my_probe_n": float(len(x))}


@pytest.fixture
def registered():
    family = registry.register(registry.MetricFamily(
        name="my_family", names=("test/my_agreement", "test/my_bits"), compute=_family,
        options={"my_scale": 1.0}, needs=("logits", "penultimate")))
    probe = probe_registry.register(probe_registry.NetworkProbe(name="my_probe", compute=_probe,
                                                                options={"n_samples": 5}))
    yield family, probe
    registry.unregister("my_family")
    probe_registry.unregister("my_probe")


def test_a_registered_family_and_probe_run_at_every_capture(tiny_cfg, registered) -> None:
    result = run(tiny_cfg("metrics.which=[redundancy,my_family]", "+metrics.my_scale=2.0",
                          "+metrics.my_probe.enabled=true", "+metrics.my_probe.n_samples=7"))
    out = Path(result["run_dir"])
    rows = [json.loads(line) for line in (out / "encoding.jsonl").read_text().splitlines()]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert len(test_rows) == 3
    for row in test_rows:
        # the family's agreement of logits with labels is the network's own accuracy, x my_scale
        assert row["test/my_agreement"] == pytest.approx(2 * row["test/net_acc"])
        assert row["test/my_bits"] == row["n_bits_used"] and row["test/my_probe_n"] == 7.0
        assert "test/knn_acc" not in row and "test/redundancy" in row
    assert SEEN["extras"] == {"train/logits": (300, 10), "test/logits": (200, 10),
                              "train/penultimate": (300, 16), "test/penultimate": (200, 16)}
    assert SEEN["layers"] == ("net.layers.1",) or len(SEEN["layers"]) == 1
    assert sorted(p.name for p in out.glob("probe-*.txt")) == ["probe-0.txt", "probe-1.txt", "probe-2.txt"]


def test_unknown_probe_option_fails_before_training(tiny_cfg, registered) -> None:
    with pytest.raises(ValueError, match=r"metrics.my_probe: unknown option\(s\) \['n'\]"):
        run(tiny_cfg("+metrics.my_probe.enabled=true", "+metrics.my_probe.n=7"))


def test_metrics_plugins_are_loaded_before_metrics_which_is_checked(tmp_path) -> None:
    """A plugin's family is a valid metrics.which entry at check time; a bad plugin is one line."""
    from activation_hash.schema import ConfigError
    from activation_hash.validate import check_config
    from tests.conftest import compose_config
    module = tmp_path / "plugin_at_check_time.py"
    module.write_text("from activation_hash.metrics.registry import MetricFamily\n"
                      "FAMILY = MetricFamily(name='at_check_time', names=('test/x',), compute=lambda c: {'test/x': 0.0})\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        check_config(compose_config(["metrics.plugins=[plugin_at_check_time]", "metrics.which=[at_check_time]"],
                                    output_dir=tmp_path / "run"))
        with pytest.raises(ConfigError, match=r"^metrics.plugins=\['nosuch_plugin'\]: cannot import 'nosuch_plugin'"):
            check_config(compose_config(["metrics.plugins=[nosuch_plugin]", "metrics.which=[redundancy]"],
                                        output_dir=tmp_path / "run"))
    finally:
        sys.path.remove(str(tmp_path))
        registry.unregister("at_check_time")
