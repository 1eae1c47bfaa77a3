"""Atomic file writes: readers see the old file or the whole new one, never a partial one.

Kept free of torch so the analysis tools can use it without importing the training stack.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | Path, content: str | bytes | Callable[[Any], None]) -> Path:
    """Write text, bytes, or whatever `content(file)` writes, to a temp file beside `path`,
    fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (no NaN or Infinity, see `strict`), written atomically."""
    return atomic_write(path, dumps_json(obj, indent=2) + "\n")


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """json.dumps of `strict(obj)`: what every JSON file and JSONL line of the project holds."""
    return json.dumps(strict(obj), default=_json_default, allow_nan=False, **kwargs)


NULL_REASONS = "null_reasons"


def strict(obj: Any) -> Any:
    """`obj` with every NaN / +-Infinity (float or numpy) replaced by null; a mapping that held one
    gets `null_reasons: {key: why}` beside it (a `KEY_note` or `note` of the mapping when it has one,
    else what the value was), so a strict JSON reader gets the file and a person the reason."""
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        reasons: dict[str, str] = dict(obj.get(NULL_REASONS) or {}) if isinstance(obj.get(NULL_REASONS), dict) else {}
        notes = [str(v) for k, v in obj.items() if isinstance(k, str) and k.endswith("note") and isinstance(v, str)]
        for key, value in obj.items():
            if key == NULL_REASONS:
                continue
            if _non_finite(value):
                out[key] = None
                reasons[str(key)] = notes[0] if notes else f"undefined ({_describe(value)})"
            else:
                out[key] = strict(value)
        if reasons:
            out[NULL_REASONS] = reasons
        return out
    if isinstance(obj, (list, tuple)):
        return [None if _non_finite(v) else strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        return None if _non_finite(obj) else obj.item()
    return obj


def _non_finite(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and not math.isfinite(float(value))


def _describe(value: Any) -> str:
    value = float(value)
    return "NaN" if math.isnan(value) else ("+Infinity" if value > 0 else "-Infinity")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
