"""What a console shows is the project's output: third-party notes a user can do nothing about are
filtered by message and issuing module (activation_hash/noise.py), and the plan's calibration runs
print nothing of their own (stdout is the plan; one line on stderr says it is calibrating)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from activation_hash.noise import ignore_third_party_warnings
from activation_hash.plan import calibrate


def _leafspec_warnings(quiet: bool) -> list[warnings.WarningMessage]:
    from pytorch_lightning.utilities._pytree import _tree_flatten  # builds a torch LeafSpec for a leaf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if quiet:
            ignore_third_party_warnings()
        _tree_flatten(1.0)
    return [w for w in caught if "LeafSpec" in str(w.message)]


def test_lightnings_leafspec_deprecation_is_filtered() -> None:
    loud = _leafspec_warnings(quiet=False)
    if not loud:
        pytest.skip("this torch / pytorch_lightning pair issues no LeafSpec deprecation")
    assert loud[0].category is FutureWarning and loud[0].filename.endswith("_pytree.py")
    assert _leafspec_warnings(quiet=True) == []


def test_the_filter_is_by_module_not_by_words() -> None:
    """The same words issued from another module (here: this test) still show."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_third_party_warnings()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
    assert len(caught) == 1


def test_a_calibration_run_prints_nothing(tmp_path: Path, capfd) -> None:
    calibrate._timed_run(["trainer.max_epochs=1", "codes.epochs=[1]"], tmp_path)
    out, err = capfd.readouterr()
    assert out == "", out
    assert "LeafSpec" not in err


def test_calibrating_says_so_once_on_stderr(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(calibrate, "measure_overheads", lambda device="cpu": {"step_overhead_s": 1e-4})
    monkeypatch.setattr(calibrate, "measure_metrics", lambda: {"metrics_s_per_gbit": 1.0})
    path = tmp_path / "plan-host.json"
    calibrate.here({}, path)
    out, err = capsys.readouterr()
    assert out == "" and err == f"calibrating this machine's unit costs (once, cached in {path})\n"
    assert json.loads(path.read_text())["step_overhead_s"] == 1e-4
    calibrate.here({}, path)  # cached: nothing measured, nothing said
    assert capsys.readouterr() == ("", "")


def test_lightnings_litlogger_tip_is_dropped_and_its_other_notes_kept(caplog) -> None:
    """Lightning logs an advertisement for its cloud logger with every Trainer (through its
    rank_zero module's logger, whose own filters are the only ones that see it)."""
    import logging

    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    from activation_hash.noise import quiet_third_party_noise
    quiet_third_party_noise()
    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
                       "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger")
        rank_zero_info("GPU available: False, used: False")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GPU available: False, used: False"], messages
