"""Writing files a servicer hands on: owner-only, and never seen half-written."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename it into place.

    The file is owner-only (letters, queues and call lists carry borrower data). With
    ``durable`` it is on disk before the rename; without, the caller makes a batch of
    files durable at once with :func:`make_durable` (one journal commit instead of one
    per file).
    """
    tmp = path.with_name(f".{path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its mode through O_TRUNC
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def make_durable(paths: Iterable[str | Path], folder: Path) -> None:
    """fsync each of ``paths`` and then ``folder`` (so that the renames into it are kept too)."""
    for path in [*paths, folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
