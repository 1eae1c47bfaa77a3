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
