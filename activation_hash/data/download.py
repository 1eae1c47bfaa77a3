"""Fetch a file from a list of mirrors, verify its checksum, and move it into place atomically.

The bytes go to a temporary file in the destination folder; only after the digest matches is it
renamed onto the final name (os.replace), so an interrupted or corrupt download never leaves a
file that looks complete. Any URL scheme urllib understands works (https, http, file).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """No mirror delivered the file."""


class ChecksumError(DownloadError):
    """A downloaded file's digest differs from the expected one."""

    def __init__(self, name: str, url: str, expected: str, actual: str, algorithm: str = "md5"):
        self.name, self.url, self.expected, self.actual = name, url, expected, actual
        super().__init__(f"{name}: {algorithm} checksum mismatch for the download from {url}: "
                         f"expected {expected}, got {actual}")


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def join_url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def fetch(url: str, dest: str | Path, expected: str | None, algorithm: str = "md5",
          timeout: float = 60.0) -> Path:
    """Download one URL to `dest`. `expected` None skips the checksum."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.new(algorithm)
        request = urllib.request.Request(url, headers={"User-Agent": "activation-hash"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if expected is not None and actual != expected.lower():
            raise ChecksumError(dest.name, url, expected.lower(), actual, algorithm)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download_file(name: str, mirrors: Sequence[str], dest: str | Path, expected: str | None,
                  algorithm: str = "md5", timeout: float = 60.0) -> Path:
    """Download `name` from the first mirror (a base URL) that delivers it with the right digest.

    Every mirror is tried in turn; if all fail, the error says what each one did. A single
    failing mirror re-raises its own error (a ChecksumError stays a ChecksumError).
    """
    if not mirrors:
        raise DownloadError(f"{name}: no mirror URLs given")
    failures: list[tuple[str, Exception]] = []
    for base in mirrors:
        url = join_url(base, name)
        try:
            return fetch(url, dest, expected, algorithm, timeout)
        except (urllib.error.URLError, OSError, ValueError, ChecksumError) as err:
            failures.append((url, err))
    if len(failures) == 1:
        url, err = failures[0]
        if isinstance(err, DownloadError):
            raise err
        raise DownloadError(f"{name}: download from {url} failed: {err}") from err
    lines = "\n".join(f"  {url}: {err}" for url, err in failures)
    raise DownloadError(f"{name}: every mirror failed:\n{lines}") from failures[-1][1]
