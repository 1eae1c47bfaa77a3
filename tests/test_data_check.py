"""`python -m activation_hash.data.check`: every study's data is checked before any study runs;
what is missing is said in one message with both fixes; --download fetches it (local server)."""

from __future__ import annotations


from activation_hash.data import check
from tests.test_data import http_root, md5, write_tiny_mnist  # noqa: F401  (http_root is a fixture)


def test_missing_data_is_one_message_naming_studies_paths_and_both_fixes(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACTIVATION_HASH_DATA", str(tmp_path / "empty"))
    assert check.main(["model_size", "cnn_zoo", "layerwise"]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "data missing for 3 of 3 studies; nothing was run:"
    mnist = next(line for line in lines if line.strip().startswith("mnist"))
    assert "(for model_size, cnn_zoo)" in mnist and str(tmp_path / "empty" / "MNIST" / "raw") in mnist
    cifar = next(line for line in lines if line.strip().startswith("cifar10"))
    assert "(for cnn_zoo, layerwise)" in cifar          # cnn_zoo sweeps both data sets
    assert "DOWNLOAD=1" in err and "data.download=true" in err and "ACTIVATION_HASH_DATA=DIR" in err


def test_present_data_passes_and_studies_without_files_need_none(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACTIVATION_HASH_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert check.needs(["model_size"])[0].name == "mnist"
    assert check.main(["model_size", "--set", "data=digits"]) == 0   # digits are embedded
    assert "data present for all 1 studies" in capsys.readouterr().out


def test_unknown_study_is_refused(capsys) -> None:
    assert check.main(["model_sise"]) == 2
    assert "study 'model_sise' is not an experiment file; allowed:" in capsys.readouterr().err


def test_download_fetches_what_is_missing_first(tmp_path, monkeypatch, http_root) -> None:  # noqa: F811
    served, url = http_root
    files = write_tiny_mnist(served)
    table = "{" + ",".join(f"{p.name}:{md5(p)}" for p in files) + "}"   # Hydra's dict grammar
    monkeypatch.setenv("ACTIVATION_HASH_DATA", str(tmp_path / "data"))
    overrides = ["--set", f"data.mirrors=[{url}]", "--set", f"data.checksums={table}"]
    assert check.main(["model_size", *overrides]) == 1
    assert check.main(["model_size", "--download", *overrides]) == 0
    assert sorted(p.name for p in (tmp_path / "data" / "MNIST" / "raw").iterdir()) == sorted(p.name for p in files)
    assert check.main(["model_size", *overrides]) == 0
