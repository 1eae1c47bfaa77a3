"""Half-space features: gate geometry (oracle: loops), the probe's npz/png and its metrics."""

from __future__ import annotations

import itertools
import math
import types

import numpy as np
import pytest
import torch

from activation_hash.codes.probes import enabled_probes, probes
from activation_hash.metrics.gate_geometry import gate_geometry, nearest_abs_cosines, pairwise_abs_cosines
from activation_hash.models.dlgn import DLGN
from activation_hash.models.mlp import MLP


def _brute(A: np.ndarray) -> dict[str, float]:
    rows = [r for r in A.tolist() if any(v != 0 for v in r)]
    def cos(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        return abs(dot) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    pairs = [cos(rows[i], rows[j]) for i, j in itertools.combinations(range(len(rows)), 2)]
    nearest = [max(cos(rows[i], rows[j]) for j in range(len(rows)) if j != i) for i in range(len(rows))]
    ordered = sorted(pairs)
    pos = 0.9 * (len(ordered) - 1)  # numpy's default (linear) quantile
    lo = int(math.floor(pos))
    p90 = ordered[lo] + (pos - lo) * (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo])
    return {"abs_cos_mean": sum(pairs) / len(pairs), "abs_cos_p90": p90, "cluster_score": sum(nearest) / len(nearest)}


@pytest.mark.parametrize("seed", range(4))
def test_gate_geometry_matches_loops(seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(7 + seed, 5))
    A[2] = -3 * A[0]           # a duplicate up to sign and scale: |cos| = 1
    if seed % 2:
        A[4] = 0               # a gate without direction is left out
    got, want = gate_geometry(A), _brute(A)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12)
    assert len(pairwise_abs_cosines(A)) == math.comb(len(A) - seed % 2, 2)
    assert nearest_abs_cosines(A)[[0, 2]].tolist() == pytest.approx([1.0, 1.0])


def test_gate_geometry_extremes():
    same = np.tile([[1.0, 2.0, -1.0]], (5, 1)) * np.array([[1], [-2], [3], [0.5], [-1]])
    assert gate_geometry(same) == pytest.approx({"abs_cos_mean": 1.0, "abs_cos_p90": 1.0, "cluster_score": 1.0})
    assert gate_geometry(np.eye(6)) == pytest.approx({"abs_cos_mean": 0.0, "abs_cos_p90": 0.0, "cluster_score": 0.0})
    assert all(math.isnan(v) for v in gate_geometry(np.ones((1, 4))).values())


def _data(out_dir, shape, epoch=5):
    x = torch.rand(8, *shape)
    return types.SimpleNamespace(test_batch=lambda n: (x[:n], torch.zeros(n, dtype=torch.long)),
                                 out_dir=out_dir, epoch=epoch, input_shape=shape)


@pytest.mark.parametrize("variant", ["dlgn", "dlgn_sf"])
def test_probe_saves_effective_weights_draws_them_and_measures_each_layer(tmp_path, variant):
    torch.manual_seed(0)
    net = DLGN((1, 6, 5), 3, depth=3, width=20, variant=variant, gating_bias=True)
    probe = probes()["halfspaces"]
    out = probe.compute(net, _data(tmp_path, (1, 6, 5)), None, **probe.options)
    saved = np.load(tmp_path / "halfspaces" / "epoch=0005.npz")
    assert int(saved["epoch"]) == 5 and str(saved["variant"]) == variant and saved["input_shape"].tolist() == [1, 6, 5]
    effective = net.effective_gating()
    for l, (A, c) in enumerate(effective, start=1):
        np.testing.assert_array_equal(saved[f"A_l{l}"], A.numpy().astype(np.float32))
        np.testing.assert_array_equal(saved[f"c_l{l}"], c.numpy().astype(np.float32))
        geometry = gate_geometry(A.numpy())
        for name, value in geometry.items():
            assert out[f"test/gate_{name}_l{l}"] == pytest.approx(value)
    assert len(out) == 3 * 3
    assert (tmp_path / "halfspaces" / "epoch=0005.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_on_flat_inputs_saves_but_does_not_draw(tmp_path):
    net = DLGN((2,), 2, depth=2, width=4)
    probe = probes()["halfspaces"]
    out = probe.compute(net, _data(tmp_path, (2,), epoch=0), None, **probe.options)
    assert (tmp_path / "halfspaces" / "epoch=0000.npz").exists()
    assert not (tmp_path / "halfspaces" / "epoch=0000.png").exists()
    assert set(out) == {f"test/gate_{n}_l{l}" for n in ("abs_cos_mean", "abs_cos_p90", "cluster_score") for l in (1, 2)}
    with pytest.raises(ValueError, match="metrics.halfspaces.images=true"):
        probe.compute(net, _data(tmp_path, (2,)), None, **{**probe.options, "images": True})


def test_auto_skips_networks_without_half_space_gates(tmp_path):
    probe = probes()["halfspaces"]
    assert "halfspaces" in enabled_probes({"halfspaces": {"enabled": "auto"}}, (1, 4, 4))
    for net in (MLP((1, 4, 4), 3, width=5), DLGN((1, 4, 4), 3, width=5, variant="dgn")):
        assert probe.compute(net, _data(tmp_path, (1, 4, 4)), None, **probe.options) == {}
        with pytest.raises(ValueError, match="metrics.halfspaces.enabled=True: .* has no half-space gates"):
            probe.compute(net, _data(tmp_path, (1, 4, 4)), None, **{**probe.options, "enabled": True})
    assert not (tmp_path / "halfspaces").exists()
    with pytest.raises(ValueError, match="metrics.halfspaces: unknown option"):
        probe.compute(net, _data(tmp_path, (1, 4, 4)), None, **{**probe.options, "colour": 1})


def test_a_dlgn_run_writes_half_spaces_at_every_capture(tiny_cfg):
    from pathlib import Path
    from activation_hash.run import run
    result = run(tiny_cfg("model=dlgn", "model.depth=2", "model.width=8", "codes.epochs=[0,2]"))
    out = Path(result["run_dir"]) / "halfspaces"
    assert sorted(p.name for p in out.iterdir()) == ["epoch=0000.npz", "epoch=0000.png", "epoch=0002.npz",
                                                     "epoch=0002.png"]
    saved = np.load(out / "epoch=0002.npz")
    assert saved["A_l1"].shape == (8, 64) and saved["A_l2"].shape == (8, 64)
    assert 0 <= result["test/gate_abs_cos_mean_l2"] <= result["test/gate_abs_cos_p90_l2"] <= 1
    assert 0 < result["test/gate_cluster_score_l1"] <= 1


@pytest.mark.parametrize("override, message", [("metrics.halfspaces.enabled=maybe",
                                                "metrics.halfspaces.enabled=maybe: allowed: auto, true, false"),
                                               ("metrics.halfspaces.max_gates=0",
                                                "metrics.halfspaces.max_gates=0: must be an int >= 1")])
def test_bad_options_fail_before_anything_is_built(override, message):
    from activation_hash.schema import ConfigError, validate
    from tests.conftest import compose_config
    with pytest.raises(ConfigError) as err:
        validate(compose_config(["model=dlgn", override]))
    assert str(err.value) == message
