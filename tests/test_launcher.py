"""The batched launcher (`hydra/launcher=batched`): plugin discovery, grouping, device choice, and
run directories equal to solo runs' (issue 13).

    PYTHONPATH=$PWD python -m pytest tests/test_launcher.py -q          # the slow CLI test: -m slow
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from activation_hash.batched.compare import compare_runs, compare_sweeps
from activation_hash.batched.run_group import group_key, run_group, unbatchable_reason
from activation_hash.rundir import claim
from activation_hash.run import run
from hydra_plugins.activation_hash_batched_launcher.batched_launcher import plan, unit_device
from tests.conftest import REPO, compose_config

# digits, 3 epochs, a schedule that changes the lr every epoch, early stopping (never triggering)
SMALL = ["trainer.max_epochs=3", "codes.epochs=[0,1,3]", "data.train_size=200", "data.test_size=100",
         "progress_bar=none", "codes.verbose=false", "codes.save=true", "scheduler=step",
         "scheduler.step_size=1", "scheduler.gamma=0.5", "callbacks=early_stopping"]
MEMBERS = [["seed=0", "model.width=16"], ["seed=1", "model.width=7", "data.label_noise=0.3"]]
TOLERANCE = 1e-4  # worst relative difference of any number in the run directories (measured: docs/batched_training.md)


def test_plugin_is_found_by_hydra() -> None:
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=batched"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("batched_launcher.BatchedLauncher")
    assert cfg.hydra.launcher.pad_widths == "auto" and cfg.hydra.launcher.max_members is None


def _tasks(variants: list[list[str]], *common: str):
    return [compose_config([*SMALL, *common, *v], output_dir=Path("/tmp/unused") / str(i))
            for i, v in enumerate(variants)]


def test_plan_groups_batchable_jobs_and_says_why_others_run_alone() -> None:
    tasks = _tasks([["seed=0", "model.width=7"], ["seed=1", "model.width=7"], ["seed=0", "model.width=16"],
                    ["seed=1", "model.width=16", "data.label_noise=0.2"], ["trainer.gradient_clip_val=1.0"],
                    ["optimizer.lr=0.5"], ["model=dlgn"]])
    units, why = plan(tasks, pad_widths=True)
    assert units == [[0, 1, 2, 3], [4], [5], [6]]
    assert why[4].startswith("no other job")  # clipping batches (per member); no job shares its clip value
    assert why[5].startswith("no other job")
    assert "effective_gating" in why[6]
    units, _ = plan(tasks, pad_widths=False)  # the CPU default: one width per group
    assert units[:2] == [[0, 1], [2, 3]]
    units, _ = plan(tasks, max_members=3, pad_widths=True)
    assert units[:2] == [[0, 1, 2], [3]]


def test_training_set_sizes_batch_only_in_step_limited_runs_without_scheduler_or_batch_norm() -> None:
    sizes = [["data.train_size=50"], ["data.train_size=100"]]
    assert plan(_tasks(sizes), pad_widths=False)[0] == [[0], [1]]  # epoch-limited (SMALL): StepLR
    steps = [*(o for o in SMALL if not o.startswith("scheduler")), "trainer.max_steps=20"]
    for extra, units in (([], [[0, 1]]), (["model.batch_norm=true"], [[0], [1]])):
        tasks = [compose_config([*steps, *v, *extra], output_dir=Path("/tmp/unused") / str(i))
                 for i, v in enumerate(sizes)]
        assert plan(tasks, pad_widths=False)[0] == units, extra


@pytest.mark.parametrize("override, words", [
    ("trainer.accumulate_grad_batches=2", "accumulate_grad_batches"),
    ("+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor", "LearningRateMonitor"),
    ("callbacks.early_stopping.monitor=val/loss", "train/loss"), ("+trainer.min_epochs=2", "min_epochs"),
    ("metrics.deepfool.enabled=true", "probes (deepfool)"), ("optimizer._target_=torch.optim.LBFGS", "LBFGS"),
])
def test_unbatchable_configs_name_the_key(tmp_path, override, words) -> None:
    assert unbatchable_reason(compose_config([*SMALL], output_dir=tmp_path)) is None
    assert words in (unbatchable_reason(compose_config([*SMALL, override], output_dir=tmp_path)) or "")


@pytest.mark.parametrize("clip", [["optimizer=sgd", "optimizer.lr=0.05", "trainer.gradient_clip_val=0.05"],
                                  ["optimizer=sgd", "optimizer.lr=0.05", "trainer.gradient_clip_val=1e-3",
                                   "trainer.gradient_clip_algorithm=value"]],
                         ids=["norm", "value"])
def test_clipped_members_equal_solo_runs_clipped_by_their_own_norm(tmp_path, clip) -> None:
    """Members of widths 16 and 7 (padded units): each one clipped as its solo run is, by its own
    gradients' norm (a norm over both members' gradients would clip both more and differ). The
    clip bites: an unclipped solo twin ends elsewhere."""
    solo, batch = _pair(tmp_path, MEMBERS, *clip)
    assert unbatchable_reason(batch[0]) is None and plan(batch, pad_widths=True)[0] == [[0, 1]]
    expected = [run(cfg) for cfg in solo]
    got = run_group(batch)
    for s, b, e, g in zip(solo, batch, expected, got):
        _assert_member_equals_solo(b, s)
        assert g["epochs_trained"] == e["epochs_trained"]
    free = run(compose_config([*SMALL, *(o for o in clip if "gradient_clip" not in o), *MEMBERS[0]],
                              output_dir=tmp_path / "free"))
    assert abs(free["train/net_loss"] - expected[0]["train/net_loss"]) > 100 * TOLERANCE * expected[0]["train/net_loss"]


def test_unit_device_spreads_units_over_gpus() -> None:
    assert [unit_device("auto", 1, u, 2, gpu_count=2)[0] for u in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert unit_device("gpu", 1, 5, 4, gpu_count=3)[0] == "cuda:2"
    assert unit_device("auto", 1, 0, 1, gpu_count=2)[0] == "cuda:0"      # one at a time: the first GPU
    assert unit_device("auto", [1], 0, 1, gpu_count=2)[0] == "cuda:1"    # trainer.devices=[1] is kept
    device, placement = unit_device("auto", 1, 1, 2, gpu_count=0, cpu_count=8)
    assert device == "cpu" and placement.threads == 4                      # CPU jobs split the cores
    assert unit_device("cpu", 1, 1, 2, gpu_count=2, cpu_count=8)[0] == "cpu"


def test_n_jobs_auto_is_one_worker_per_visible_gpu() -> None:
    from hydra_plugins.activation_hash_batched_launcher.batched_launcher import resolve_n_jobs
    assert [resolve_n_jobs("auto", gpu_count=g) for g in (0, 1, 4)] == [1, 1, 4]
    assert resolve_n_jobs(3, gpu_count=8) == 3
    for bad in (0, "two", 1.5):
        with pytest.raises(ValueError, match=f"hydra.launcher.n_jobs={bad}: an integer >= 1, or auto"):
            resolve_n_jobs(bad)


def _assert_member_equals_solo(member, solo) -> None:
    """Every number of the member's run directory within TOLERANCE of its solo run's, same code bits."""
    worst = compare_runs(Path(member.output_dir), Path(solo.output_dir), {})
    assert max(worst["encoding"], worst["metrics.csv"], worst["result"]) < TOLERANCE, worst
    assert worst.get("codes bits differing", 0) == 0, worst


def _pair(tmp_path, variants, *common):
    solo = [compose_config([*SMALL, *common, *v], output_dir=tmp_path / "solo" / str(i)) for i, v in enumerate(variants)]
    batch = [compose_config([*SMALL, *common, *v], output_dir=tmp_path / "batch" / str(i))
             for i, v in enumerate(variants)]
    return solo, batch


@pytest.mark.parametrize("extra", [[], ["model.batch_norm=true", "trainer.check_val_every_n_epoch=1"],
                                   # codes.selections: each selection scored from the member's capture, as solo
                                   ["model.depth=2", "codes.selections={all:all,l1:1,l2:2}"],
                                   # stops after epoch 2 (no loss improves by 10): a "stopped" capture
                                   ["trainer.max_epochs=4", "codes.epochs=[0,1,4]",
                                    "callbacks.early_stopping.min_delta=10", "callbacks.early_stopping.patience=1"],
                                   # the Keras L2 term (the authors' recipe): in each member's loss, train/loss_l2 logged
                                   ["model.l2=0.01"]])
def test_member_run_dirs_equal_solo_runs(tmp_path, extra) -> None:
    solo, batch = _pair(tmp_path, MEMBERS, *extra)
    assert unbatchable_reason(batch[0]) is None and plan(batch, pad_widths=True)[0] == [[0, 1]]
    expected = [run(cfg) for cfg in solo]
    got = run_group(batch)
    for s, b, e, g in zip(solo, batch, expected, got):
        keys: dict[str, float] = {}
        worst = compare_runs(Path(b.output_dir), Path(s.output_dir), keys)
        assert ("val/loss" in keys) == ("trainer.check_val_every_n_epoch=1" in extra), keys  # only where asked for
        assert ("train/loss_l2" in keys) == ("model.l2=0.01" in extra), keys
        if "model.batch_norm=true" not in extra:
            assert max(worst["encoding"], worst["metrics.csv"], worst["result"]) < TOLERANCE, worst
            assert worst.get("codes bits differing", 0) == 0, worst
        else:  # eval mode under BN carries the pre-norm bias's rounding noise: docs/batched_training.md
            assert keys["train/loss"] < TOLERANCE and keys["train/acc"] < TOLERANCE, keys
            assert max(keys["val/loss"], keys["test/net_loss"], keys["train/net_loss"]) < 1e-3, keys
            assert worst["codes bits differing"] < 0.01, worst
        assert g["epochs_trained"] == e["epochs_trained"]
        assert json.loads((Path(b.output_dir) / "result.json").read_text())["run_dir"] == b.output_dir
    if any("min_delta" in e for e in extra):
        rows = [json.loads(line) for line in (Path(batch[0].output_dir) / "encoding.jsonl").read_text().splitlines()]
        assert [(r["epoch"], r["reason"]) for r in rows][-1] == (2, "stopped")


@pytest.mark.parametrize("schedule", [[], ["scheduler=step_in_steps", "scheduler.step_size=4"]],
                         ids=["no scheduler", "lr in steps"])
def test_step_limited_members_of_different_training_set_sizes_equal_solo_runs(tmp_path, schedule) -> None:
    """The sample-size study's case: trainer.max_steps, members of 200, 50 and 130 images (7, 2
    and 5 batches of 32 per epoch, padded to one batch per step), so their epochs end at different
    steps and max_steps=9 cuts two of their last epochs part way; with a schedule in optimizer
    steps (sample_size_cifar10's) the learning rate drops at steps 4 and 8 for every member."""
    common = [*(o for o in SMALL if not o.startswith("scheduler")), *schedule]
    # captures 0, 1, 2: epoch 3 is never reached by the 200- and 130-image members (refused by the schema)
    common += ["trainer.max_epochs=1000", "trainer.max_steps=9", "data.batch_size=32", "codes.epochs=[0,1,2]"]
    variants = [["seed=0", "model.width=16", "data.train_size=200"],
                ["seed=1", "model.width=16", "data.train_size=50", "data.label_noise=0.3"],
                ["seed=0", "model.width=16", "data.train_size=130"]]
    solo = [compose_config([*common, *v], output_dir=tmp_path / "solo" / str(i)) for i, v in enumerate(variants)]
    batch = [compose_config([*common, *v], output_dir=tmp_path / "batch" / str(i)) for i, v in enumerate(variants)]
    assert len({group_key(cfg) for cfg in batch}) == 1
    expected = [run(cfg) for cfg in solo]
    got = run_group(batch)
    for s, b, e, g in zip(solo, batch, expected, got):
        _assert_member_equals_solo(b, s)
        assert (g["epochs_trained"], g["step"]) == (e["epochs_trained"], e["step"]) == (g["epoch"], 9)
    assert [g["epochs_trained"] for g in got] == [2, 5, 2]


def test_cnn_members_train_as_one_stacked_network_and_equal_solo_runs(tmp_path) -> None:
    """tiny ResNet-20 (batch norm) on the digits, seeds 0/1 (one with label noise): a StackedNet
    (torch.func) group vs solo runs."""
    solo, batch = _pair(tmp_path, [["seed=0"], ["seed=1", "data.label_noise=0.3"]], "model=tiny/resnet20",
                        "trainer.max_epochs=2", "codes.epochs=[0,2]", "trainer.check_val_every_n_epoch=1")
    assert unbatchable_reason(batch[0]) is None and plan(batch)[0] == [[0, 1]]
    expected = [run(cfg) for cfg in solo]
    got = run_group(batch)
    for s, b, e, g in zip(solo, batch, expected, got):
        keys: dict[str, float] = {}
        worst = compare_runs(Path(b.output_dir), Path(s.output_dir), keys)
        assert keys["train/loss"] < 1e-4 and keys["train/acc"] < 1e-4, keys
        assert max(keys["val/loss"], keys["test/net_loss"], keys["train/net_loss"]) < 1e-3, keys
        assert worst["codes bits differing"] < 0.01, worst
        assert g["epochs_trained"] == e["epochs_trained"] == 2
        assert json.loads((Path(b.output_dir) / "meta.json").read_text())["batched"]["members"] == 2


# model=binary_encoding brings its metric family (also unbatchable); without it the network's reason shows
@pytest.mark.parametrize("override, words", [("model=dlgn", "effective_gating()"),
                                             ("model=binary_encoding metrics.which=[redundancy,knn]", "loss_terms()")])
def test_networks_that_do_not_stack_say_why(tmp_path, override, words) -> None:
    cfg = compose_config([*SMALL, *override.split()], output_dir=tmp_path)
    assert words in (unbatchable_reason(cfg) or ""), unbatchable_reason(cfg)


def test_networks_with_loss_terms_or_random_layers_run_alone() -> None:
    from torch import nn

    from activation_hash.batched.run_group import _network_reason

    class Penalized(nn.Linear):
        def loss_terms(self):
            return []

    assert "loss_terms(): the batched module" in _network_reason(nn.Sequential(nn.Flatten(), Penalized(64, 10)), (1, 8, 8))
    assert "Dropout" in _network_reason(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Dropout()), (1, 8, 8))
    assert _network_reason(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10)), (1, 8, 8)) is None


def test_wandb_gives_each_member_its_own_run(tmp_path, monkeypatch) -> None:
    """logger=wandb without an API key: offline, one W&B run per member (in its run directory, as
    a solo run's), with the member's metrics and the tags of its job's overrides."""
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no netrc: no credentials
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfgs = [compose_config([*SMALL, *v, "logger=wandb", "codes.save=false"], output_dir=tmp_path / str(i))
            for i, v in enumerate(MEMBERS)]
    assert unbatchable_reason(cfgs[0]) is None
    run_group(cfgs, tags=[["seed=0", "model.width=16"], ["seed=1", "model.width=7"]])
    runs = set()
    for i, width in enumerate((16, 7)):
        (run_dir,) = (tmp_path / str(i) / "wandb").glob("offline-run-*")
        (history,) = run_dir.glob("run-*.wandb")
        data = history.read_bytes()
        assert b"test/knn_acc" in data and b"train/loss" in data
        assert f"model.width={width}".encode() in data
        runs.add(history.name)
        assert (tmp_path / str(i) / "result.json").is_file()
    assert len(runs) == 2


def test_finished_members_are_skipped_and_locked_ones_left_alone(tmp_path) -> None:
    cfgs = [compose_config([*SMALL, *v, "codes.save=false"], output_dir=tmp_path / str(i))
            for i, v in enumerate([*MEMBERS, ["seed=2", "model.width=24", "data.label_noise=0.1"]])]
    first = run_group(cfgs)
    (tmp_path / "1" / "result.json").unlink()  # member 1 did not finish
    finished = (tmp_path / "0" / "result.json").stat().st_mtime_ns
    with claim(cfgs[2], tmp_path / "2"):       # member 2 is being run by someone else
        again = run_group(cfgs)
    assert again[0] == first[0] and (tmp_path / "0" / "result.json").stat().st_mtime_ns == finished
    assert again[1]["test/knn_acc"] == pytest.approx(first[1]["test/knn_acc"])
    assert "skipped" in again[2]


@pytest.mark.slow
def test_cli_sweep_equals_basic_launcher(tmp_path) -> None:
    """python -m activation_hash -m hydra/launcher=batched vs the basic launcher, same grid."""
    grid = [*SMALL, "model.width=7,16", "seed=0,1", "data.label_noise=0,0.2", "codes.save=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name, launcher in (("batched", ["hydra/launcher=batched", "hydra.launcher.pad_widths=true"]), ("basic", [])):
        subprocess.run([sys.executable, "-m", "activation_hash", "-m", *launcher, *grid,
                        f"hydra.sweep.dir={tmp_path / name}"], check=True, env=env, cwd=REPO,
                       capture_output=True, text=True)
    worst = compare_sweeps(tmp_path / "batched", tmp_path / "basic")
    assert worst["runs"] == 8 and max(worst["encoding"], worst["metrics.csv"], worst["result"]) < TOLERANCE


def test_a_member_dir_with_a_killed_solo_runs_checkpoint_starts_clean(tmp_path, monkeypatch) -> None:
    """A group trains from epoch 0: the killed solo run's outputs (and checkpoint) move aside; the
    member's encoding.jsonl holds one run's rows, as an untouched directory would."""
    from activation_hash.models.classifier import Classifier
    cfgs = [compose_config([*SMALL, *v], output_dir=tmp_path / "batch" / str(i)) for i, v in enumerate(MEMBERS)]
    original = Classifier.training_step

    def killed(self, *args, **kwargs):
        if self.current_epoch == 2:
            raise RuntimeError("killed")   # stands for the process being killed
        return original(self, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(Classifier, "training_step", killed)
        with pytest.raises(RuntimeError, match="killed"):
            run(cfgs[0])
    assert (tmp_path / "batch" / "0" / "checkpoints" / "last.ckpt").is_file()
    run_group(cfgs)
    fresh = [compose_config([*SMALL, *v], output_dir=tmp_path / "fresh" / str(i)) for i, v in enumerate(MEMBERS)]
    run_group(fresh)
    rows = lambda d: [json.loads(line)["epoch"] for line in (d / "encoding.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "batch" / "0") == rows(tmp_path / "fresh" / "0") == [0, 0, 1, 1, 3, 3]
    assert list((tmp_path / "batch").glob("0.previous-*/checkpoints/last.ckpt"))


def test_batched_groups_go_through_submitit_and_requeue_as_the_same_unit(tmp_path) -> None:
    """hydra/launcher=batched_local: a group and a solo job each run as a submitit job (the SLURM
    path on this machine); their run dirs equal the in-process batched launcher's."""
    # accumulate_grad_batches=2 does not batch (clipping did before it was made per member)
    grid = [*SMALL, "seed=0,1", "model.width=7", "trainer.accumulate_grad_batches=1,2", "codes.save=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name, launcher in (("submitit", "hydra/launcher=batched_local"), ("inline", "hydra/launcher=batched")):
        out = subprocess.run([sys.executable, "-m", "activation_hash", "-m", launcher, *grid,
                              f"hydra.sweep.dir={tmp_path / name}"], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "submitit" / ".submitit").glob("*/*_log.*"))
    assert "batched group of 2 jobs" in logs                       # the accumulate=1 pair ran as one group
    assert len(list((tmp_path / "submitit" / ".submitit").glob("*/*_result.pkl"))) == 3   # 1 group + 2 solo
    worst = compare_sweeps(tmp_path / "submitit", tmp_path / "inline")
    assert worst["runs"] == 4 and max(worst["encoding"], worst["metrics.csv"], worst["result"]) < TOLERANCE

    from hydra_plugins.activation_hash_batched_launcher.batched_launcher import _Unit
    unit = _Unit()
    again = unit.checkpoint(0, [1, 2], ["a"])                     # what submitit calls on preemption
    assert again.function is unit and again.args == (0, [1, 2], ["a"])


def test_members_record_their_jobs_config_choices(tmp_path) -> None:
    """A batched member's meta.json names the config-group options of its own job (model: mlp, ...),
    as a solo run's does: the report's model_name and the claims read them (a group once wrote {})."""
    from activation_hash.analysis.collect import collect_runs
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "activation_hash", "-m", "hydra/launcher=batched", *SMALL,
                          "trainer.max_epochs=1", "codes.epochs=[1]", "seed=0,1", "codes.save=false",
                          f"hydra.sweep.dir={tmp_path}"], env=env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "batched group of 2 jobs" in out.stderr + out.stdout
    metas = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/meta.json"))]
    assert len(metas) == 2 and all(m["batched"]["members"] == 2 for m in metas)
    assert all(m["config_choices"].get("model") == "mlp" and m["config_choices"].get("data") for m in metas)
    assert set(collect_runs([tmp_path])["model_name"]) == {"mlp"}
