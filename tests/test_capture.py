"""Capture: packed bits equal np.packbits, codes equal hand-computed sign patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activation_hash.codes import CodeRecorder, collect_codes, describe_units, pack_bits, parse_layers
from activation_hash.models import MLP


@pytest.mark.parametrize("width", [1, 7, 8, 9, 64, 101])
def test_pack_bits_matches_numpy(width: int) -> None:
    bits = torch.rand(33, width, generator=torch.Generator().manual_seed(width)) > 0.5
    np.testing.assert_array_equal(pack_bits(bits).numpy(), np.packbits(bits.numpy(), axis=1))


def _manual_mlp_bits(model: MLP, x: torch.Tensor) -> np.ndarray:
    """Pre-activation signs computed layer by layer without hooks."""
    h, bits = x.flatten(1), []
    for layer in model:
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.ReLU):
            bits.append((h > 0).numpy())
            h = torch.relu(h)
        else:
            h = layer(h)
    return np.concatenate(bits, axis=1)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_recorder_matches_manual_pre_activations(batch_norm: bool) -> None:
    torch.manual_seed(0)
    model = MLP((1, 8, 8), 10, depth=3, width=12, batch_norm=batch_norm).eval()
    x = torch.rand(50, 1, 8, 8)
    with torch.no_grad(), CodeRecorder(model) as rec:
        model(x)
        bits = rec.take().numpy()
        names, units = rec.layer_names, rec.layer_units
    with torch.no_grad():
        expected = _manual_mlp_bits(model, x)
    assert bits.shape == (50, 36) and units == [12, 12, 12] and len(names) == 3
    np.testing.assert_array_equal(bits, expected)
    assert 0 < bits.mean() < 1


class Reused(nn.Module):
    """One ReLU module object called at two places, one in-place LeakyReLU, one Tanh."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 5), nn.Linear(5, 3), nn.Linear(3, 2)
        self.relu = nn.ReLU(inplace=inplace)
        self.leaky = nn.LeakyReLU(0.1, inplace=inplace)
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.a(x)
        h2 = self.b(self.relu(h1))
        h3 = self.c(self.tanh(self.relu(h2)))
        return self.leaky(h3)


@pytest.mark.parametrize("inplace", [False, True])
def test_reused_and_inplace_modules_each_call_is_a_layer(inplace: bool) -> None:
    torch.manual_seed(1)
    model = Reused(inplace)
    x = torch.randn(20, 4)
    with torch.no_grad():
        h1 = model.a(x)
        h2 = model.b(torch.relu(h1))
        h3 = model.c(torch.tanh(torch.relu(h2)))
        expected = torch.cat([h1 > 0, h2 > 0, h3 > 0], dim=1).numpy()
    with torch.no_grad(), CodeRecorder(model) as rec:
        model(x)
        bits = rec.take().numpy()
    assert rec.layer_names == ["relu", "relu", "leaky"] and rec.layer_units == [5, 3, 2]
    np.testing.assert_array_equal(bits, expected)


def test_layer_selection_keeps_chosen_call_sites() -> None:
    torch.manual_seed(2)
    model = MLP((6,), 3, depth=4, width=5).eval()
    x = torch.randn(9, 6)
    with torch.no_grad(), CodeRecorder(model) as rec:
        model(x)
        all_bits = rec.take()
    with torch.no_grad(), CodeRecorder(model, layers=[1, 3]) as rec:
        model(x)
        some = rec.take()
    torch.testing.assert_close(some, torch.cat([all_bits[:, 5:10], all_bits[:, 15:20]], dim=1))


def test_hooks_are_removed_after_the_block() -> None:
    model = MLP((3,), 2, depth=2, width=4)
    with CodeRecorder(model):
        pass
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_model_without_relu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no ReLU-like modules"):
        with CodeRecorder(nn.Sequential(nn.Linear(2, 2), nn.Tanh())):
            pass


@pytest.mark.parametrize("spec, expected", [
    ("all", [0, 1, 2, 3, 4]), (None, [0, 1, 2, 3, 4]), (2, [1]), ([1, 3], [0, 2]), ("2..4", [1, 2, 3]),
    ("..2", [0, 1]), ("4..", [3, 4]), ("3", [2]),
])
def test_parse_layers(spec: object, expected: list[int]) -> None:
    assert parse_layers(spec, 5) == expected


@pytest.mark.parametrize("spec, match", [
    (6, r"codes.layers=6 names layer\(s\) \[6\] outside 1..5"), ([0, 2], r"outside 1..5"),
    ("4..2", "empty range"), ("first", "not a layer selection"), ([], "non-empty list"), (1.5, "not a layer"),
])
def test_parse_layers_errors_name_key_value_and_allowed(spec: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        parse_layers(spec, 5)
    assert "codes.layers" in str(info.value) and "1..5" in str(info.value)


def test_collect_codes_in_memory_and_memmap_agree(tmp_path) -> None:
    torch.manual_seed(3)
    model = MLP((1, 4, 4), 3, depth=2, width=10)
    x, y = torch.rand(70, 1, 4, 4), torch.randint(0, 3, (70,))
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 70, 16)]
    ram = collect_codes(model, batches)
    mm = collect_codes(model, batches, num_samples=70, memmap_path=tmp_path / "c.npy")
    assert isinstance(mm.codes, np.memmap)
    np.testing.assert_array_equal(ram.codes, np.asarray(mm.codes))
    np.testing.assert_array_equal(ram.labels, y.numpy())
    with torch.no_grad():
        logits = model(x)
        expected_bits = _manual_mlp_bits(model, x)
    np.testing.assert_array_equal(np.unpackbits(ram.codes, axis=1)[:, :20], expected_bits)
    assert ram.n_bits == 20 and ram.layer_units == [10, 10]
    assert ram.acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert ram.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert model.training, "collect_codes must restore train mode"


def test_describe_units_counts_conv_positions() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4), nn.ReLU())
    assert describe_units(model, (1, 5, 5)) == [("1", 75), ("4", 4)]
