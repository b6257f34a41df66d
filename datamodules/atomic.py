"""Whole-file writes that never leave a half-written file.

The text goes to a temporary file beside the target, is flushed to disk, then renamed over the
target (``os.replace`` is atomic within a file system): a reader, or a run killed mid-write, sees
the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def atomic_open(path: str | Path) -> Iterator[TextIO]:
    """``open(path, "w", newline="")`` that replaces ``path`` only once the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)
