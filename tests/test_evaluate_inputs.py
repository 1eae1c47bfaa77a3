"""`python -m activation_hash.evaluate`: both backends on one codes file, and every bad input
as one line `error: key=value: what is allowed` with exit status 2 (no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activation_hash import evaluate
from activation_hash.codes import io


def _codes(tmp_path: Path, **changes) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.random((3, 40)) < 0.5
    y = rng.integers(0, 3, 300)
    bits = centers[y] ^ (rng.random((300, 40)) < 0.1)
    packed = np.packbits(bits, axis=1)
    arrays = {"train_codes": packed[:200], "test_codes": packed[200:], "train_labels": y[:200],
              "test_labels": y[200:], "n_bits": np.int64(40), **changes}
    path = tmp_path / "codes.npz"
    np.savez(path, **arrays)
    return path


def test_both_backends_run_and_agree(tmp_path: Path) -> None:
    path = _codes(tmp_path)
    got = {}
    for backend in ("sklearn", "torch"):
        out = tmp_path / f"{backend}.json"
        assert evaluate.main([str(path), "--backend", backend, "--out", str(out), "--threads", "1"]) == 0
        got[backend] = json.loads(out.read_text())
        assert got[backend]["backend"] == backend
    sk, to = got["sklearn"], got["torch"]
    for key in ("train/redundancy", "test/redundancy", "test/knn_acc", "test/knn_acc_index", "test/knn_boundary_ties"):
        assert to[key] == sk[key], key
    for key in ("test/kmeans_acc", "train/kmeans_acc", "test/logreg_acc"):
        assert abs(to[key] - sk[key]) <= 0.03, key  # well-separated synthetic classes


def test_auto_backend_is_sklearn_without_a_device(tmp_path: Path) -> None:
    path = _codes(tmp_path)
    assert evaluate.main([str(path), "--which", "redundancy"]) == 0
    assert json.loads(path.with_suffix(".metrics.json").read_text())["backend"] == "sklearn"


@pytest.mark.parametrize("changes,message", [
    ({"train_codes": np.zeros((200, 5), np.int32)}, "train_codes=int32 array of shape (200, 5): must be uint8 of shape (n >= 1, 5)"),
    ({"test_codes": np.zeros((100, 4), np.uint8)}, "test_codes=uint8 array of shape (100, 4): must be uint8 of shape (n >= 1, 5)"),
    ({"train_labels": np.zeros(199, np.int64)}, "train_labels=int64 array of shape (199,): must be integers of shape (200,)"),
    ({"test_labels": np.zeros(100, np.float32)}, "test_labels=float32 array of shape (100,): must be integers"),
    ({"n_bits": np.array([40, 40])}, "n_bits=[40, 40]: must be one integer >= 0"),
    ({"n_bits": np.float64(40)}, "n_bits=40.0: must be one integer >= 0"),
    ({"train/penultimate": np.zeros((10, 3), np.float32)}, "train/penultimate=float32 array of shape (10, 3): must have 200 rows"),
    ({"train_labels": np.full(200, 4)}, "train_labels=[4]: one class only"),
])
def test_bad_fields_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, changes, message) -> None:
    path = _codes(tmp_path, **changes)
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_bad_device_and_out_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _codes(tmp_path)
    for args, message in ((["--device", "cuda:7"], "--device='cuda:7': "), (["--device", "tpu"], "--device='tpu': allowed"),
                          (["--out", str(tmp_path / "nowhere" / "m.json")], "does not exist"),
                          (["--out", str(tmp_path)], "is a directory")):
        with pytest.raises(SystemExit) as exc:
            evaluate.main([str(path), *args])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_one_reader(tmp_path: Path) -> None:
    """evaluate reads through codes/io.py; the file saved by save_codes reads back checked."""
    path = io.save_codes(tmp_path / "epoch=0001.npz", train_codes=np.zeros((3, 1), np.uint8),
                         test_codes=np.zeros((2, 1), np.uint8), train_labels=[0, 1, 0], test_labels=[1, 0], n_bits=3)
    assert evaluate.read_codes(path)["n_bits"] == 3
    with pytest.raises(io.CodesFileError, match="no such file"):
        io.load_codes(tmp_path / "absent.npz")


def test_output_is_the_runs_compact_table_and_the_json_keeps_every_metric(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """Issue 21: the console gets the run's table (a few lines, no precision-recall lists); the
    JSON gets every metric of every family, equal to compute_families on the same codes."""
    from activation_hash.metrics import compute_families
    from activation_hash.metrics.registry import CodeSet
    from activation_hash.summary import COLUMNS
    path = _codes(tmp_path, epoch=np.int64(3))
    assert evaluate.main([str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= 15 and len(out) < 2000, out
    assert "pr_curve" not in out and "[" not in out, out
    written = json.loads(path.with_suffix(".metrics.json").read_text())
    data = io.load_codes(path)
    which = evaluate.default_which(set())
    assert "retrieval" in which  # the family whose lists made the old output 27 KB
    expected = compute_families(CodeSet(data["train_codes"], data["train_labels"], data["test_codes"],
                                        data["test_labels"], data["n_bits"], {}), which,
                                {"knn_k": 9, "logreg_mode": "ovo", "n_threads": 1})
    assert list(written) == list(expected)
    assert written == json.loads(json.dumps(expected))  # every value, precision-recall lists included
    assert isinstance(written["test/pr_curve/precision"], list) and len(written["test/pr_curve/precision"]) > 1
    row = next(line for line in lines if line.split()[:1] == ["3"])  # the epoch from the file's field
    shown = [key for key, _ in COLUMNS if key in written]
    assert row.split()[2:] == [f"{written[key]:.3f}" for key in shown]
    assert f"wrote {path.with_suffix('.metrics.json')} (all {len(written)} metrics)" in out
    assert f"retrieval: test/map {written['test/map']:.3f}" in out  # a family outside the table: one line


def test_device_auto_is_accepted(tmp_path: Path) -> None:
    """--device auto: CUDA when there is one, else the CPU (it used to be refused as 'allowed auto, ...')."""
    import torch
    path = _codes(tmp_path)
    assert evaluate.main([str(path), "--which", "redundancy", "--device", "auto"]) == 0
    backend = json.loads(path.with_suffix(".metrics.json").read_text())["backend"]
    assert backend == ("torch" if torch.cuda.is_available() else "sklearn")


@pytest.mark.parametrize("argv,line", [
    (["--kk", "3"], "error: --kk (unknown option): did you mean --k? allowed: "),
    (["--logreg-mode", "ov"], "error: --logreg-mode=ov: did you mean ovr? allowed: ovo, ovr, multinomial"),
    (["--which", "redundancy,kmean"], "error: --which=redundancy,kmean: unknown metric family 'kmean'; "
                                      "did you mean kmeans? allowed: "),
    (["--json"], "error: --json=(no value): expects one value"),
])
def test_argparse_errors_and_typos_are_one_line_with_the_closest_name(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                      argv: list[str], line: str) -> None:
    path = _codes(tmp_path)
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(path), *argv])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(line) and captured.err.count("\n") == 1 and captured.out == "", captured
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npz"]


def test_a_plugin_that_raises_as_it_loads_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_family.py").write_text("raise RuntimeError('needs a GPU build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _codes(tmp_path)
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(path), "--plugins", "broken_family"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plugins=broken_family: loading it raised RuntimeError: needs a GPU build;") \
        and err.count("\n") == 1, err
