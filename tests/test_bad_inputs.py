"""Every bad input of tests/bad_inputs.py (every config group, both launchers, evaluate, report and
collect) is refused in process with exit status 2 and one `error: KEY=...` line naming the key,
before anything is trained or written; a sweep with a bad job trains nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bad_inputs import TABLE, case_id, classify, make_fixtures, run_case

def _param(entry: str, argv: list[str], key: str):
    return pytest.param(entry, argv, key, id=case_id(entry, argv))


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _must_not_compute(*args, **kwargs):
    raise AssertionError("a metric was computed before every input was checked")


@pytest.mark.parametrize(("entry", "argv", "key"), [_param(*row) for row in TABLE])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(entry: str, argv: list[str], key: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fixtures(tmp_path / "in")
    out_root = tmp_path / "out"
    before = _files(tmp_path / "in")
    if entry == "evaluate":  # refused before any metric is computed
        from activation_hash import evaluate
        monkeypatch.setattr(evaluate, "compute_families", _must_not_compute)
    code, text, written = run_case(entry, argv, tmp_path / "in", out_root)
    assert classify(code, text, written, key) == "clean", f"exit {code}, written {written}:\n{text[-3000:]}"
    if entry == "evaluate":
        assert _files(tmp_path / "in") == before, "evaluate may write nothing (no metrics.json, no codes file touched)"
    if entry == "app":
        assert not out_root.exists() or not any(out_root.rglob("*")), "nothing may be written before the checks pass"
    assert not (tmp_path / "in" / "rep").exists()


def test_the_table_covers_at_least_80_inputs_of_every_entry_point() -> None:
    assert len(TABLE) >= 80
    assert {entry for entry, *_ in TABLE} == {"app", "evaluate", "report", "collect"}
    assert any("hydra/launcher=batched" in argv for _, argv, _ in TABLE)


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=batched"]], ids=["basic", "batched"])
def test_a_sweep_with_bad_jobs_trains_nothing_and_lists_every_bad_job(launcher: list[str], tmp_path: Path) -> None:
    argv = ["-m", *launcher, "model.width=16,abc,8,0"]
    code, text, written = run_case("app", argv, tmp_path, tmp_path / "out")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2 and written == [], text
    assert len(errors) == 2, text  # width abc (job #1) and width 0 (job #3), one line each
    assert "model.width=abc" in errors[0] and "#1" in errors[0] and "of the 4 in the sweep" in errors[0]
    assert "model.width=0" in errors[1] and "#3" in errors[1]
    assert not (tmp_path / "out").exists(), "no job of the sweep may start"


def test_a_bad_value_of_every_job_is_one_line(tmp_path: Path) -> None:
    code, text, _ = run_case("app", ["-m", "seed=0,1", "model.depth=0"], tmp_path, tmp_path / "out")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "every job of the 2" in errors[0], text


@pytest.mark.parametrize("seeds,n", [("seed=2", 2), ("seed=3,4", 4)])
def test_a_command_line_value_of_a_studys_swept_key_replaces_it(seeds: str, n: int, tmp_path: Path) -> None:
    """As Hydra's basic sweeper: the last value of a key wins, so the study's seed axis (0,1 in the smoke
    sample_size study: one width x 2 sizes x seeds 0,1) gives way to the command line's."""
    argv = ["-m", "+experiment=sample_size", "profile=smoke", seeds, "model.depth=0"]
    code, text, _ = run_case("app", argv, tmp_path, tmp_path / "out")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and f"every job of the {n} in the sweep" in errors[0], text


def test_hydra_full_error_keeps_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from activation_hash.__main__ import main
    from activation_hash.schema import ConfigError
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setenv("ACTIVATION_HASH_OUTPUT", str(tmp_path))
    with pytest.raises(ConfigError, match="model.width=abc"):
        main(["model.width=abc"])


def test_one_grid_point_of_an_experiment_runs_without_m() -> None:
    """An experiment file without -m is refused unless every grid key is given (a W&B agent's run)."""
    from activation_hash.schema import ConfigError
    from activation_hash.validate import check_command
    os.environ.setdefault("ACTIVATION_HASH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    with pytest.raises(ConfigError, match=r"^experiment=model_size: is a sweep over model.width, seed; run"):
        check_command(["+experiment=model_size", "data.download=true"])
    assert check_command(["+experiment=model_size", "model.width=7", "seed=1", "data.download=true"]) == 1


def test_documented_values_pass(tmp_path: Path) -> None:
    from activation_hash.validate import check_command
    for argv in (["codes.layers=name:*"], ["model.depth=2", "model.widths=[8,4]"], ["model=dlgn",
                 "metrics.halfspaces.enabled=true"], ["data=moons", "metrics.regions.enabled=true"],
                 ["+trainer.limit_train_batches=0.5"], ["optimizer=sgd", "+optimizer.nesterov=true"],
                 ["-m", "seed=0,1", "hydra/launcher=batched", "hydra.launcher.n_jobs=2"]):
        assert check_command([*argv, f"output_root={tmp_path}"]) >= 1, argv


def test_the_batched_launcher_refuses_a_sweep_with_a_bad_job_before_grouping(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The launcher's own check (a sweep started by something else than `python -m activation_hash`)."""
    from hydra_plugins.activation_hash_batched_launcher.batched_launcher import bad_jobs, refuse_bad_jobs
    from tests.conftest import compose_config
    good = compose_config(["model.width=8"], output_dir=tmp_path / "a")
    bad = compose_config(["model.width=8", "data.batch_size=0"], output_dir=tmp_path / "b")
    overrides = [["model.width=8"], ["data.batch_size=0"], ["x=1"]]
    assert bad_jobs([good, good], overrides[:2]) == []
    lines = bad_jobs([good, bad, "its config does not resolve here (KeyError)"], overrides, first=4)
    assert lines[0].startswith("data.batch_size=0: must be an int >= 1 [job #5 (data.batch_size=0)]")
    assert "job #6" in lines[1] and len(lines) == 2
    with pytest.raises(SystemExit) as exit_:
        refuse_bad_jobs([good, bad], overrides[:2], 0)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: data.batch_size=0: must be an int >= 1 [job #1")


@pytest.mark.parametrize(("argv", "line"), [
    (["model._target_=tests.user_targets.RaisingNet"],
     "error: model._target_=tests.user_targets.RaisingNet: its constructor raised ValueError: RaisingNet needs 3-D"),
    (["+callbacks.mine._target_=tests.user_targets.RaisingCallback"],
     "error: callbacks.mine._target_=tests.user_targets.RaisingCallback: its constructor raised RuntimeError: "
     "threshold=1.0 is not supported"),
], ids=["network", "callback"])
def test_an_exception_in_a_user_constructor_is_one_line_naming_the_target(argv: list[str], line: str,
                                                                          tmp_path: Path) -> None:
    code, text, written = run_case("app", argv, tmp_path, tmp_path / "out")
    errors = [x for x in text.splitlines() if x.startswith("error:")]
    assert code == 2 and "Traceback" not in text and len(errors) == 1, text
    assert errors[0].startswith(line), errors
    assert not [w for w in written if w.endswith(("result.json", "metrics.csv"))], "nothing may be trained"


EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "retrieval" else [pytest.mark.slow])
                                  for n in EXPERIMENTS])
def test_every_study_passes_the_whole_sweep_check(name: str) -> None:
    """No false refusals: every job of every shipped study (smoke grid) passes the pre-check."""
    from activation_hash.validate import check_command
    assert check_command([f"+experiment={name}", "-m", "data.download=true"]) >= 2
