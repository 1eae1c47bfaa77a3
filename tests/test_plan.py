"""activation_hash.plan: the jobs it composes are Hydra's, its units are the batched launcher's, its
arithmetic follows the stated model on a fake calibration, and it refuses a unit that will not fit."""

from __future__ import annotations

import json
import math

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict

from activation_hash.plan import cost_study, main, plan_study
from activation_hash.plan.arch import describe
from activation_hash.plan.cost import run_facts, unit_cost
from activation_hash.plan.expand import jobs, units

FAKE = {"device": "fake", "source": "test", "step_overhead_s": 0.01, "epoch_overhead_s": 0.5,
        "batch_overhead_s": 0.002, "capture_overhead_s": 1.0, "metrics_s_per_gbit": 100.0,
        "knn_s_per_tword_pair": 1000.0, "base_ram_bytes": 10**8,
        "train_flops_per_s": {"default": 1e9}, "eval_flops_per_s": {"default": 2e9}}


def _hydra_job(study: str, overrides: list[str]) -> dict:
    """The reference: one job composed by Hydra with its sweep values as overrides."""
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={study}", "profile=smoke", *overrides])
    with open_dict(cfg):
        cfg.output_dir = "plan"
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("study,axes", [("sample_size", ["model.width", "data.train_size", "seed"]),
                                        ("dlgn_vs_relu", ["data", "model", "model.width", "seed"])])
def test_jobs_are_hydras_jobs(study: str, axes: list[str]) -> None:
    tasks, launcher = jobs(study, "smoke", ["hydra/launcher=batched"])
    assert launcher["_target_"].endswith("BatchedLauncher")
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        params = compose(config_name="config", overrides=[f"+experiment={study}", "profile=smoke"],
                         return_hydra_config=True).hydra.sweeper.params
        grid = OmegaConf.to_container(params, resolve=True)
    sizes = [len(str(grid[a]).split(",")) for a in axes]
    assert len(tasks) == math.prod(sizes)
    # first, last and a middle job against Hydra's own composition of that job
    import itertools
    combos = list(itertools.product(*[str(grid[a]).split(",") for a in axes]))
    for i in (0, len(combos) // 2, len(combos) - 1):
        assert tasks[i] == _hydra_job(study, [f"{a}={v}" for a, v in zip(axes, combos[i])])


@pytest.mark.parametrize("study", ["training_time", "dlgn_vs_relu", "regularization"])
def test_units_are_the_launchers(study: str) -> None:
    from hydra_plugins.activation_hash_batched_launcher.batched_launcher import plan
    tasks, launcher = jobs(study, "smoke", ["hydra/launcher=batched"])
    for pad in (False, True):
        mine, _ = units(tasks, launcher, pad, lambda m, s, c: describe(m, s, c))
        theirs, _ = plan([OmegaConf.create(t) for t in tasks], launcher.get("max_members"), pad)
        assert mine == theirs


def test_run_facts_step_limited_and_epochs() -> None:
    p = plan_study("sample_size", "smoke", ["hydra/launcher=basic"], gpu=False)
    assert len(p["units"]) == len(p["tasks"])          # the basic launcher: every job alone
    for task, f in zip(p["tasks"], p["facts"]):
        assert f["steps"] == task["trainer"]["max_steps"]
        per_epoch = math.ceil(task["data"]["train_size"] / task["data"]["batch_size"])
        assert f["epochs"] == math.ceil(f["steps"] / per_epoch)
        assert f["captures"] == 1                      # codes.epochs=last: the capture at the step limit
        assert f["bits"] == task["model"]["width"]
    p = plan_study("training_time", "smoke", [], gpu=False)
    f = p["facts"][0]
    assert (f["n_train"], f["n_val"], f["n_test"]) == (48000, 12000, 10000)
    assert f["steps"] == 10 * 375 and f["captures"] == 6 and f["val_epochs"] == 0   # nothing reads val/*
    for asked in (["trainer.check_val_every_n_epoch=1"], ["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/loss"]):
        assert plan_study("training_time", "smoke", asked, gpu=False)["facts"][0]["val_epochs"] == 10, asked


def test_unit_cost_arithmetic_on_a_fake_calibration() -> None:
    info = {"family": "MLP", "flops": 1000, "params": 50, "activations": 20}
    run = {"n_train": 100, "n_val": 40, "n_test": 60, "batch": 10, "eval_batch": 20, "steps": 30, "epochs": 3,
           "val_epochs": 3, "captures": 2, "bits": 128, "dim": 4, "n_file": 140, "n_test_file": 60,
           "code_bits": 2 * 160 * 128, "save_codes": True, "resumable": True, "subset": False,
           "max_dense_bytes": 1000}
    one = unit_cost([run], info, FAKE)
    t = one["terms"]
    assert t["train"] == pytest.approx(30 * (0.01 + 3 * 1000 * 10 / 1e9))
    assert t["epoch_machinery"] == pytest.approx(3 * 0.5)
    assert t["validation"] == pytest.approx(3 * (40 * 1000 / 2e9 + 2 * 0.002))
    assert t["capture_forward"] == pytest.approx(2 * (1.0 + 160 * 1000 / 2e9 + 8 * 0.002))
    assert t["capture_metrics"] == pytest.approx(2 * (100 * 160 * 128 / 1e9 + 1000 * 100 * 60 * 2 / 1e12))
    assert one["seconds"] == pytest.approx(sum(t.values()))
    views = unit_cost([{**run, "selection_bits": [128, 64, 32]}], info, FAKE)["terms"]  # codes.selections
    assert views["capture_metrics"] == pytest.approx(sum(2 * (100 * 160 * b / 1e9 + 1000 * 100 * 60 * math.ceil(b / 64)
                                                              / 1e12) for b in (128, 64, 32)))
    data = 4 * 4 * 200 + 4 * 200
    assert one["peak_ram_bytes"] == 10**8 + data + 16 * 50 + max(2 * 4 * 20 * 10, 160 * 128 // 8 + 1000)
    assert one["disk_bytes"] == 2 * 12 * 50 + 2 * 160 * 128 // 8 + 2 * 20_000 + 3 * 200
    two = unit_cost([run, run], info, FAKE)   # a group: one step overhead, two members' arithmetic
    assert two["terms"]["train"] == pytest.approx(30 * (0.01 + 2 * 3 * 1000 * 10 / 1e9))
    assert two["terms"]["capture_metrics"] == pytest.approx(2 * t["capture_metrics"])
    assert two["terms"]["epoch_machinery"] == pytest.approx(t["epoch_machinery"])


def test_plan_json_and_refusal(tmp_path, capsys) -> None:
    profile = tmp_path / "fake.json"
    profile.write_text(json.dumps(FAKE))
    out = tmp_path / "plan.json"
    assert main(["+experiment=training_time", "--json", str(out), "--device-profile", str(profile)]) == 0
    plan = json.loads(out.read_text())
    s, = plan["studies"]
    for key in ("name", "profile", "runs", "units", "optimizer_steps", "captures", "code_gbit",
                "estimated_seconds", "peak_ram_bytes", "disk_bytes"):
        assert key in s
    assert (s["runs"], s["optimizer_steps"], s["captures"]) == (4, 15000, 24)
    assert plan["device"] == "fake" and plan["total_estimated_seconds"] == pytest.approx(s["estimated_seconds"])
    # a machine of 0.01 GB RAM: every unit is refused, named, with its numbers and what to change
    capsys.readouterr()
    assert main(["+experiment=training_time", "--device-profile", str(profile), "--check", "--max-ram", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "training_time: unit MLP/mnist width=40" in err and "> this machine's 0.0 GB" in err
    assert "even one run needs" in err and "nothing was run" in err
    assert main(["+experiment=training_time", "--device-profile", str(profile), "--check", "--max-disk", "0"]) == 1
    assert "codes.save=false" in capsys.readouterr().err


def test_cost_study_sums_units() -> None:
    p = plan_study("training_time", "smoke", ["hydra/launcher=batched"], gpu=False)
    s = cost_study(p, FAKE)
    assert s["units"] == 2 and s["groups"] == 2        # on a CPU a group holds one width
    assert s["estimated_seconds"] == pytest.approx(sum(c["seconds"] for c in s["_unit_costs"]))
    assert s["code_gbit"] == pytest.approx(sum(f["captures"] * 58000 * f["bits"] for f in p["facts"]) / 1e9)


def test_bad_study_is_an_error(capsys) -> None:
    assert main(["+experiment=nope"]) == 2
    assert "error: +experiment=nope" in capsys.readouterr().err


def test_refusal_names_the_group_size_that_fits(tmp_path, capsys) -> None:
    p = plan_study("training_time", "smoke", ["hydra/launcher=batched"], gpu=False)
    unit = p["units"][0]
    facts, info = [p["facts"][i] for i in unit], p["infos"][unit[0]]
    one, two = (unit_cost(facts[:k], info, FAKE)["peak_ram_bytes"] for k in (1, 2))
    assert one < two
    profile = tmp_path / "fake.json"
    profile.write_text(json.dumps(FAKE))
    limit = (one + two) / 2 / 1e9
    assert main(["+experiment=training_time", "--device-profile", str(profile), "--check", "--max-ram", str(limit)]) == 1
    err = capsys.readouterr().err
    assert "hydra.launcher.max_members=1 (smaller groups)" in err


def test_reproduce_paper_plans_before_any_training() -> None:
    """`make reproduce-paper` runs the plan with --check (exit 1 stops make) before the first study."""
    import subprocess
    from tests.conftest import REPO
    lines = subprocess.run(["make", "-n", "-C", str(REPO), "reproduce-paper", "PROFILE=paper", "BIN=python"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    plan = next(i for i, line in enumerate(lines) if "-m activation_hash.plan" in line)
    train = next(i for i, line in enumerate(lines) if "-m activation_hash +experiment" in line)
    assert plan < train and "--check" in lines[plan] and "profile=paper" in lines[plan]
    assert "+experiment=cnn_zoo" in lines[plan] and "hydra/launcher=batched" in lines[plan]


def test_layerwise_plans_one_run_per_seed_scoring_its_selections() -> None:
    p = plan_study("layerwise", "smoke", ["hydra/launcher=basic"], gpu=False)
    assert len(p["tasks"]) == 2                             # seeds 0, 1: one network each
    assert p["facts"][0]["selection_bits"] == [40] * 5 + [80, 120, 160, 200, 160, 120, 80]


def test_a_gpu_machine_calibrates_on_its_gpu_and_caches_apart(monkeypatch, tmp_path) -> None:
    """calibration_device() picks CUDA when torch sees it; the cache file is per device, and a GPU
    calibration records its Gram rate, its memory and gpu=true (device-selection logic, tested on the
    CPU with the measurements stubbed)."""
    import torch

    from activation_hash.plan import calibrate
    monkeypatch.setenv("ACTIVATION_HASH_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert calibrate.calibration_device() == "cpu" and calibrate.cache_path().name.endswith(".json")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert calibrate.calibration_device() == "cuda"
    assert calibrate.cache_path("cuda") != calibrate.cache_path("cpu")
    seen = []
    monkeypatch.setattr(calibrate, "measure_overheads", lambda device: seen.append(("overheads", device)) or {
        "step_overhead_s": 1e-3, "epoch_overhead_s": 1e-2, "batch_overhead_s": 1e-3, "capture_overhead_s": 1.0})
    monkeypatch.setattr(calibrate, "measure_metrics", lambda: {"metrics_s_per_gbit": 5.0, "knn_s_per_tword_pair": 1.0})
    monkeypatch.setattr(calibrate, "measure_family", lambda *a: seen.append(("family", a[-1])) or (1e12, 2e12))
    monkeypatch.setattr(calibrate, "measure_gram", lambda device: {"gram_flops_per_s": 4e13, "device_memory_bytes": 80e9})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    calib = calibrate.here({"MLP": ({}, (4,), 2, 100)}, device="cuda")
    assert seen == [("overheads", "cuda"), ("family", "cuda")]
    assert calib["gpu"] is True and calib["gram_flops_per_s"] == 4e13 and calib["device_memory_bytes"] == 80e9
    assert "Fake GPU" in calib["device"] and calibrate.cache_path("cuda").is_file()


@pytest.mark.parametrize("user", [["seed=2"], ["seed=2", "model.width=5,7"], ["data.train_size=100"]])
def test_a_command_line_value_replaces_the_studys_axis_as_hydras_sweeper_does(user: list[str]) -> None:
    """`+experiment=sample_size seed=2 -m` runs seed 2 only: Hydra's basic sweeper appends the command
    line to the study's `hydra.sweeper.params` and the last value of a key wins (its split_arguments,
    the reference here; the package itself uses only Hydra's public override parser)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    tasks, _ = jobs("sample_size", "smoke", user)
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        params = compose(config_name="config", overrides=["+experiment=sample_size", "profile=smoke"],
                         return_hydra_config=True).hydra.sweeper.params
    study = [f"{k}={v}" for k, v in OmegaConf.to_container(params, resolve=True).items()]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides([*study, *user]), None)
    combos = [combo for batch in batches for combo in batch]
    assert len(tasks) == len(combos)
    for i in (0, len(combos) - 1):
        assert tasks[i] == _hydra_job("sample_size", list(combos[i]))


def test_best_rate_is_the_fastest_round_after_a_warm_up() -> None:
    """A fake clock: the warm-up call costs 9 s, the five rounds 4, 1, 2, 8 and 2 s a call (a loaded
    machine only slows a round); the rate is the fastest round's, and each round runs until min_s."""
    from activation_hash.plan.calibrate import best_rate
    costs = iter([9.0, 4.0, 1.0, 2.0, 8.0, 2.0])
    now, calls = [0.0], []

    def run() -> None:
        calls.append(1)
        now[0] += next(costs)

    rate = best_rate(10.0, run, rounds=5, min_s=0.5, clock=lambda: now[0])
    assert rate == 10.0 / 1.0 and len(calls) == 6
    costs, calls[:] = iter([9.0, 4.0, 1.0, 2.0, 8.0, 2.0]), []
    assert best_rate(10.0, run, rounds=5, min_s=0.5, max_s=5.0, clock=lambda: now[0]) == 10.0
    assert len(calls) == 4   # rounds of 4, 1 and 2 s: past max_s after the third


def test_cpu_calibrations_are_cached_per_thread_count(monkeypatch, tmp_path) -> None:
    import torch

    from activation_hash.plan import calibrate
    monkeypatch.setenv("ACTIVATION_HASH_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = calibrate.cache_path("cpu")
        torch.set_num_threads(2)
        two = calibrate.cache_path("cpu")
    finally:
        torch.set_num_threads(threads)
    assert one != two and one.name.endswith("-cpu1t.json") and two.name.endswith("-cpu2t.json")
    assert calibrate.cache_path("cuda").name.endswith("-cuda.json")
