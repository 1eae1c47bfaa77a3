"""No module of the package (or its Hydra plugins) imports another module's private (`_name`)
helpers: what two modules share is public and lives in one place (activation_hash/runs/ for the
run directory). Also: one writer of a run directory's result files."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("activation_hash", "hydra_plugins")


def _python_files():
    for root in ROOTS:
        yield from sorted((REPO / root).rglob("*.py"))


def private_imports() -> list[str]:
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("activation_hash"):
                found += [f"{path.relative_to(REPO)}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_import_across_modules() -> None:
    assert private_imports() == []


def test_the_checker_sees_a_private_import(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "activation_hash"
    pkg.mkdir()
    (pkg / "a.py").write_text("from activation_hash.b import _helper, public\n")
    (tmp_path / "hydra_plugins").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert private_imports() == ["activation_hash/a.py: from activation_hash.b import _helper"]


def test_one_module_writes_the_result_files() -> None:
    """encoding.jsonl and result.json are written by runs/record.py only (the solo callback and the
    batched group both go through RunRecord)."""
    writes = re.compile(r'write\w*\(.*/ "(encoding\.jsonl|result\.json)"')  # a write call on one of those paths
    writers = sorted(str(p.relative_to(REPO)) for p in _python_files()
                     if "runs/" not in str(p) and any(writes.search(line) for line in p.read_text().splitlines()))
    assert writers == [], writers
    assert writes.search('atomic_write(out / "encoding.jsonl", text)')  # the pattern catches the old writers


OMEGACONF_PRIVATE = re.compile(r"\._(get_node|is_missing|is_none|is_interpolation|value|get_full_key|set_value)\(")


def test_no_module_calls_omegaconfs_private_node_api() -> None:
    """OmegaConf's node internals (`_get_node`, `_is_missing`, `_value`, ...) change between
    releases; the package uses its public API (OmegaConf.is_missing / is_interpolation / select /
    to_container)."""
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for path in _python_files()
             for number, line in enumerate(path.read_text().splitlines(), 1) if OMEGACONF_PRIVATE.search(line)]
    assert not found, "\n".join(found)
