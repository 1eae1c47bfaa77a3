"""Every file of an unfinished run directory is checked before the run continues from its
checkpoint: a missing, cut-off or garbage file is rebuilt when it can be (meta.json, rows past the
checkpoint), else the run is moved aside and starts over with one log line naming the file. Either
way the finished run's rows equal an uninterrupted run's, and no capture gets another epoch's label.

Oracle: the uninterrupted run of tests/test_resume.py's config (same rows, metrics.csv, codes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activation_hash.run import run
from tests.conftest import compose_config
from tests.test_resume import RUN, Killed, _kill_in, _result, _rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(compose_config(RUN, output_dir=out))
    return out


def _killed(tmp_path: Path, monkeypatch, hook: str = "training_step") -> Path:
    """A run killed in epoch 3 (mid-epoch: checkpoint after epoch 2, captures 0..2; or after epoch
    3's capture, before its checkpoint: captures 0..3)."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_in(patch, hook, 3)
        with pytest.raises(Killed):
            run(compose_config(RUN, output_dir=out))
    return out


def _cut_last_line(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])


def _garbage_row(path: Path) -> None:
    with open(path, "a") as f:
        f.write("garbage,\x00x,,,not a number\n")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


# (file, how it is damaged, the log line's words, whether the run resumes or starts over)
FAULTS = {
    "config-garbage": ("config.yaml", lambda p: p.write_text("{[: not yaml"), "config.yaml cannot be read", False),
    "meta-garbage": ("meta.json", lambda p: p.write_text('{"started": '), "meta.json cannot be read", True),
    "encoding-missing": ("encoding.jsonl", Path.unlink, "encoding.jsonl is missing", False),
    "encoding-cut-off": ("encoding.jsonl", _cut_last_line, "encoding.jsonl has no test row for the capture of epoch 2",
                         False),
    "metrics-garbage-row": ("metrics.csv", _garbage_row, "metrics.csv row", False),
    "metrics-missing": ("metrics.csv", Path.unlink, "metrics.csv is missing", False),
    "codes-truncated": ("codes/epoch=0001.npz", _truncate, "codes/epoch=0001.npz cannot be read", False),
    "codes-missing": ("codes/epoch=0002.npz", Path.unlink, "codes/epoch=0002.npz cannot be read", False),
}


SLOW = ("metrics-missing", "codes-missing")  # variants of the faults above, in `make test-all`


@pytest.mark.parametrize("fault", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW else f for f in FAULTS])
def test_a_damaged_file_is_rebuilt_or_the_run_starts_over(uninterrupted, tmp_path, monkeypatch, caplog, fault) -> None:
    name, damage, words, resumes = FAULTS[fault]
    out = _killed(tmp_path, monkeypatch)
    damage(out / name)
    with caplog.at_level("INFO"):
        result = run(compose_config(RUN, output_dir=out))
    assert words in caplog.text
    assert ("resuming from epoch 2" in caplog.text) == resumes
    assert bool(list(tmp_path.glob("run.previous-*"))) == (not resumes)  # the damaged run is kept aside
    assert _rows(out) == _rows(uninterrupted)
    assert _result(out) == _result(uninterrupted) and result["epochs_trained"] == 4
    assert (out / "metrics.csv").read_text() == (uninterrupted / "metrics.csv").read_text()
    for path in sorted((uninterrupted / "codes").glob("epoch=*.npz")):
        assert (out / "codes" / path.name).read_bytes() == path.read_bytes()


def test_a_cut_off_line_past_the_checkpoint_is_dropped_and_the_run_resumes(uninterrupted, tmp_path, monkeypatch,
                                                                            caplog) -> None:
    out = _killed(tmp_path, monkeypatch, hook="on_train_epoch_end")  # epoch 3's rows written, checkpoint at 2
    _cut_last_line(out / "encoding.jsonl")
    with caplog.at_level("INFO"):
        run(compose_config(RUN, output_dir=out))
    assert "resuming from epoch 2" in caplog.text and not list(tmp_path.glob("run.previous-*"))
    assert _rows(out) == _rows(uninterrupted)


def test_a_deleted_encoding_never_labels_the_trained_network_epoch_0(uninterrupted, tmp_path, monkeypatch) -> None:
    out = _killed(tmp_path, monkeypatch)
    (out / "encoding.jsonl").unlink()
    run(compose_config(RUN, output_dir=out))
    first = {r["split"]: r for r in _rows(out) if r["epoch"] == 0}
    want = {r["split"]: r for r in _rows(uninterrupted) if r["epoch"] == 0}
    assert first["test"]["test/net_acc"] == want["test"]["test/net_acc"]
    assert sorted({r["epoch"] for r in _rows(out)}) == [0, 1, 2, 3, 4]


def test_a_finished_run_with_a_garbage_result_starts_over(tmp_path, caplog) -> None:
    out = tmp_path / "run"
    run(compose_config([*RUN, "trainer.max_epochs=1", "codes.epochs=[0,1]"], output_dir=out))
    (out / "result.json").write_text("{not json")
    with caplog.at_level("INFO"):
        result = run(compose_config([*RUN, "trainer.max_epochs=1", "codes.epochs=[0,1]", "skip_finished=true"],
                                    output_dir=out))
    assert "result.json cannot be read" in caplog.text and result["epochs_trained"] == 1
    assert json.loads((out / "result.json").read_text())["epochs_trained"] == 1


def test_a_csv_without_an_epochs_train_row_starts_the_run_over(uninterrupted, tmp_path, monkeypatch, caplog) -> None:
    """What a hard kill between the checkpoint and Lightning's write of the epoch's train row leaves."""
    out = _killed(tmp_path, monkeypatch)
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    loss, epoch = header.index("train/loss"), header.index("epoch")
    kept = [line for line in lines[1:] if not (line.split(",")[loss] and line.split(",")[epoch] == "2.0")]
    assert len(kept) == len(lines) - 2
    (out / "metrics.csv").write_text("\n".join([lines[0], *kept]) + "\n")
    with caplog.at_level("INFO"):
        run(compose_config(RUN, output_dir=out))
    assert "metrics.csv has no train/loss row for epoch(s) 2" in caplog.text
    assert (out / "metrics.csv").read_text() == (uninterrupted / "metrics.csv").read_text()
