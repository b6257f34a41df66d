"""Whole-file writes: a failed write leaves the previous file and no temporary file."""

from __future__ import annotations

import pytest

from datamodules.atomic import atomic_open, atomic_write_text


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_open(path) as f:
            f.write("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]
    with atomic_open(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n"
