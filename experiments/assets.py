"""Checksums of shipped model directories (the embedded dataset's pre-trained diffusion model).

``python -m experiments checksum --directory experiments/assets/embedded_sd`` verifies every file
against ``SHA256SUMS`` in that directory (``--write true`` records them after re-training).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SUMS_NAME = "SHA256SUMS"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def directory_checksums(directory: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file below ``directory`` but the sums file."""
    return {
        str(p.relative_to(directory)): _digest(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != SUMS_NAME
    }


def checksum(directory: str, write: bool = False) -> dict[str, str]:
    """Verify (or, with ``write``, record) the checksums of a model directory.

    Raises:
        FileNotFoundError: The directory or its ``SHA256SUMS`` is missing.
        ValueError: A file is missing, extra, or differs from its recorded checksum.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory not found: {root}")
    actual = directory_checksums(root)
    sums = root / SUMS_NAME
    if write:
        sums.write_text("".join(f"{h}  {name}\n" for name, h in actual.items()))
        print(f"wrote {len(actual)} checksums to {sums}")
        return actual
    if not sums.is_file():
        raise FileNotFoundError(f"{sums} not found: record it with --write true")
    expected = dict(reversed(line.split(maxsplit=1)) for line in sums.read_text().splitlines())
    expected = {name.strip(): h for name, h in expected.items()}
    problems = [f"{n}: missing" for n in expected if n not in actual]
    problems += [f"{n}: not in {SUMS_NAME}" for n in actual if n not in expected]
    problems += [f"{n}: checksum differs" for n in expected
                 if n in actual and actual[n] != expected[n]]
    if problems:
        raise ValueError(f"{root} does not match {sums}: " + "; ".join(problems))
    print(f"{root}: {len(actual)} files match {SUMS_NAME}")
    return actual
