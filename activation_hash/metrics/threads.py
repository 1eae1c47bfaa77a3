"""A cap on compute threads for the metrics (BLAS, OpenMP, faiss, torch), without importing them.

``thread_limit(n)`` caps the thread pools of the libraries already loaded and records ``n``;
a metric that loads a library lazily (scikit-learn's OpenMP code, faiss) enters ``capped()``
after importing it, so the cap reaches pools that did not exist when the limit was set. Useful
when several runs share a machine: oversubscribed BLAS/OpenMP threads stall at their barriers
and can make the metrics many times slower.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

_LIMITS: list[int] = []


def current() -> int | None:
    """The innermost active cap, or None."""
    return _LIMITS[-1] if _LIMITS else None


def _set_framework_threads(n: int | None) -> dict[str, int]:
    """Set faiss's and torch's thread counts if they are loaded; return the previous ones."""
    before = {}
    if "faiss" in sys.modules:
        faiss = sys.modules["faiss"]
        before["faiss"] = faiss.omp_get_max_threads()
        if n is not None:
            faiss.omp_set_num_threads(n)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        before["torch"] = torch.get_num_threads()
        if n is not None:
            torch.set_num_threads(n)
    return before


def _restore(before: dict[str, int]) -> None:
    if "faiss" in before:
        sys.modules["faiss"].omp_set_num_threads(before["faiss"])
    if "torch" in before:
        sys.modules["torch"].set_num_threads(before["torch"])


@contextmanager
def capped() -> Iterator[None]:
    """Apply the active cap (if any) to every pool loaded now; restore them on exit."""
    n = current()
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    before = _set_framework_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        _restore(before)


@contextmanager
def thread_limit(n_threads: int | None) -> Iterator[None]:
    """Cap BLAS, OpenMP (scikit-learn, torch), faiss and torch threads; None leaves them alone."""
    if n_threads is None:
        yield
        return
    _LIMITS.append(n_threads)
    try:
        with capped():
            yield
    finally:
        _LIMITS.pop()
