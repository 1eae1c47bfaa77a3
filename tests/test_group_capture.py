"""A batched group's captures, member by member (issues 20 and 23): each member's codes are made,
scored and let go before the next member's (a capture never holds two members' codes), and the
network probes that batch (the stochastic activation diameter) run on each member's own network,
so its rows equal its solo run's.

    OMP_NUM_THREADS=1 python -m pytest tests/test_group_capture.py -q
"""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import activation_hash.batched.run_group as run_group_module
from activation_hash.batched.compare import compare_runs
from activation_hash.batched.run_group import run_group, unbatchable_reason
from activation_hash.codes.collect import SplitCodes
from activation_hash.run import run
from hydra_plugins.activation_hash_batched_launcher.batched_launcher import plan
from tests.conftest import compose_config
from tests.test_launcher import MEMBERS, SMALL, TOLERANCE, _pair


def _codes_alive() -> int:
    """Bytes of every code array alive in this process (SplitCodes.codes, garbage collected first)."""
    gc.collect()
    return sum(o.codes.nbytes for o in gc.get_objects() if isinstance(o, SplitCodes))


def test_a_group_scores_its_members_one_at_a_time(tmp_path, monkeypatch) -> None:
    """Three members of widths 16, 7 and 16: whenever a member is scored, the code arrays alive
    are exactly that member's (train + test rows x its packed bytes), not the group's."""
    seen: list[tuple[int, int]] = []
    real = run_group_module.score_selections

    def spy(train, test, *args, **kwargs):
        seen.append((_codes_alive(), train.codes.nbytes + test.codes.nbytes))
        return real(train, test, *args, **kwargs)

    monkeypatch.setattr(run_group_module, "score_selections", spy)
    variants = [*MEMBERS, ["seed=2", "model.width=16"]]
    cfgs = [compose_config([*SMALL, "codes.save=false", *v], output_dir=tmp_path / str(i)) for i, v in enumerate(variants)]
    run_group(cfgs)
    n_rows = 200 + 100  # data.train_size + data.test_size (SMALL)
    own = {w: n_rows * math.ceil(w / 8) for w in (16, 7)}
    assert len(seen) == 3 * 3  # captures at epochs 0, 1, 3 of three members
    assert {member for _, member in seen} == set(own.values())
    for alive, member in seen:
        assert alive == member, seen
    assert max(alive for alive, _ in seen) < sum(own[w] for w in (16, 7, 16))


def test_diameter_probe_rows_of_members_equal_solo_runs(tmp_path) -> None:
    """metrics.diameter (exact, on test and random inputs) batches: each member's probe runs on its
    own network (widths 16 and 7), and its rows equal its solo run's within the launcher's tolerance."""
    probe = ["metrics.diameter.enabled=true", "metrics.diameter.n_samples=40"]
    solo, batch = _pair(tmp_path, MEMBERS, *probe)
    assert unbatchable_reason(batch[0]) is None and plan(batch, pad_widths=True)[0] == [[0, 1]]
    for cfg in solo:
        run(cfg)
    run_group(batch)
    means = []
    for s, b in zip(solo, batch):
        keys: dict[str, float] = {}
        worst = compare_runs(Path(b.output_dir), Path(s.output_dir), keys)
        assert max(worst["encoding"], worst["metrics.csv"], worst["result"]) < TOLERANCE, (worst, keys)
        rows = [json.loads(line) for line in (Path(b.output_dir) / "encoding.jsonl").read_text().splitlines()]
        test_rows = [r for r in rows if r["split"] == "test"]
        assert len(test_rows) == 3 and all(r["test/diameter_n"] == 40 and "test/random_diameter_mean" in r
                                           for r in test_rows)
        means.append(test_rows[-1]["test/diameter_mean"])
    assert means[0] != means[1]  # each member its own network


def test_diameter_probe_of_stacked_members_equals_solo_runs_at_initialization(tmp_path) -> None:
    """The same wiring for a StackedNet group (tiny VGG-16): each member's probe runs on its own
    network, and its diameters equal its solo run's. At initialization (trainer.max_epochs=0), where
    the members' weights are their solo runs' bit for bit: after training, the rounding noise of
    grouped convolutions and batch norm (1e-6) moves a CNN's many near-zero pre-activations, and with
    them its small diameters, by up to 10% (measured on tiny ResNet-20 after one epoch), so a trained
    CNN's diameters do not test the wiring (the MLP test above does). Without batch norm: with it and
    no conv biases, the units over all-zero border pixels sit exactly at 0 at initialization and
    every diameter is 0."""
    probe = ["metrics.diameter.enabled=true", "metrics.diameter.n_samples=20", "model=tiny/vgg16",
             "model.batch_norm=false", "trainer.max_epochs=0", "codes.epochs=[0]", "codes.save=false"]
    variants = [["seed=0"], ["seed=1", "data.label_noise=0.3"]]
    solo, batch = _pair(tmp_path, variants, *probe)
    assert unbatchable_reason(batch[0]) is None
    for cfg in solo:
        run(cfg)
    run_group(batch)
    means = []
    for s, b in zip(solo, batch):
        keys: dict[str, float] = {}
        worst = compare_runs(Path(b.output_dir), Path(s.output_dir), keys)
        assert max(worst["encoding"], worst["result"]) < TOLERANCE, (worst, keys)
        row = [json.loads(line) for line in (Path(b.output_dir) / "encoding.jsonl").read_text().splitlines()][-1]
        assert row["test/diameter_n"] == 20 and row["test/diameter_mean"] > 0
        means.append(row["test/diameter_mean"])
    assert means[0] != means[1]


def test_members_with_the_network_source_equal_solo_runs(tmp_path) -> None:
    """codes.source=network in a batched group: each member's Gram capture runs on its own network
    and its rows equal its solo run's (same source) within the launcher's tolerance."""
    source = ["codes.source=network", "codes.save=false", "metrics.backend=torch"]
    solo, batch = _pair(tmp_path, MEMBERS, *source)
    for cfg in solo:
        run(cfg)
    run_group(batch)
    for s, b in zip(solo, batch):
        keys: dict[str, float] = {}
        worst = compare_runs(Path(b.output_dir), Path(s.output_dir), keys)
        assert max(worst["encoding"], worst["result"]) < TOLERANCE, (worst, keys)
        rows = [json.loads(line) for line in (Path(b.output_dir) / "encoding.jsonl").read_text().splitlines()]
        assert rows and all(r["code_passes"] == 1 for r in rows)
