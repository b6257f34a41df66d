"""CSV files one stage writes and a later one reads (``subclasses.csv``, ``negatives.csv``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def read_stage_csv(
    path: str | Path, required: Sequence[str], setting: str, hint: str, unique: str | None = None
) -> list[dict[str, str]]:
    """The rows of a CSV an earlier stage wrote, after checking it exists and has its columns.

    Args:
        path: The file.
        required: Columns that must be present.
        setting: The config key that named the file (for the error message).
        hint: How to produce the file (for the error message).
        unique: A column whose values must not repeat (one row per class, per image, ...).

    Raises:
        FileNotFoundError: The file does not exist (names ``setting`` and ``hint``).
        ValueError: A required column is missing, or a ``unique`` value repeats (names both
            lines).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{setting}={str(path)!r} does not exist: {hint}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing} (got {reader.fieldnames})")
        rows = list(reader)
    if unique is not None:
        seen: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):  # line 1 is the header
            if row[unique] in seen:
                raise ValueError(
                    f"{path}:{line}: {unique} {row[unique]!r} repeats line {seen[row[unique]]}"
                )
            seen[row[unique]] = line
    return rows
