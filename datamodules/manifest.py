"""The one format of a synthetic image set: ``manifest.jsonl`` beside the images.

One JSON object per line and per image::

    {"path": "images/pizza/000123.png", "label": 1, "class_name": "pizza",
     "negative_class_name": "garlic_bread", "seed": 123, "source_image": ".../train_00007.jpg",
     "sampler": "disc_ds", "params": {...}, "model": "<pipeline dir>", "prompt": "..."}

``path`` is relative to the manifest's directory. The generation stage writes it (callbacks) and
the mixing datamodule and the FID evaluation read it; both go through this module.

Beside it, ``guidance.jsonl`` holds one row per image with what the guidance did at every sampler
step (``{"path": ..., "sampler": ..., "gamma": [...], "coef_neg": [...], ...}``, fields in
:mod:`lightning_modules.sampling.diagnostics`), and ``guidance_summary.json`` their per-step
quantiles over the set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datamodules.atomic import atomic_open

MANIFEST_NAME = "manifest.jsonl"
GUIDANCE_NAME = "guidance.jsonl"
GUIDANCE_SUMMARY_NAME = "guidance_summary.json"


class ManifestError(ValueError):
    """A manifest row that cannot be used as it is."""


@dataclass
class ManifestRow:
    """One generated image and the record of how it was made."""

    path: str
    label: int
    class_name: str
    seed: int
    sampler: str
    negative_class_name: str | None = None
    source_image: str | None = None
    params: dict = field(default_factory=dict)
    model: str = ""
    prompt: str = ""
    subclass: int | str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class SyntheticSample:
    """A manifest row resolved against its directory: absolute path and label."""

    path: str
    label: int
    row: ManifestRow


def read_manifest(
    manifest: str | Path, class_names: Sequence[str] | None = None, check_files: bool = True
) -> list[SyntheticSample]:
    """Read and validate a manifest.

    Args:
        manifest: ``manifest.jsonl``, or a directory holding one.
        class_names: When given, every row's class must be in it and its label must be the class's
            index there.
        check_files: Require every image to exist.

    Raises:
        FileNotFoundError: The manifest, or an image a row names, is missing.
        ManifestError: A malformed row, an unknown class or a label that disagrees with the class
            list; the message names the file and line.
    """
    path = Path(manifest)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"synthetic manifest not found: {path}")
    index = {name: i for i, name in enumerate(class_names)} if class_names is not None else None
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = ManifestRow(**json.loads(line))
        except (json.JSONDecodeError, TypeError) as err:
            raise ManifestError(f"{where}: not a manifest row ({err})") from err
        if index is not None:
            if row.class_name not in index:
                raise ManifestError(
                    f"{where}: class {row.class_name!r} is not one of the dataset's "
                    f"{len(index)} classes"
                )
            if index[row.class_name] != row.label:
                raise ManifestError(
                    f"{where}: label {row.label} disagrees with class {row.class_name!r}, which "
                    f"is class {index[row.class_name]} of the dataset"
                )
        image = path.parent / row.path
        if check_files and not image.is_file():
            raise FileNotFoundError(f"{where}: image {row.path!r} does not exist ({image})")
        samples.append(SyntheticSample(str(image), row.label, row))
    return samples


def write_manifest(manifest: str | Path, rows: Iterable[ManifestRow]) -> Path:
    """Write a whole manifest atomically (temporary file, then rename)."""
    path = Path(manifest)
    with atomic_open(path) as f:
        for row in rows:
            f.write(row.to_json() + "\n")
    return path


def write_guidance(directory: str | Path, records: Iterable[dict]) -> Path:
    """Write ``guidance.jsonl`` (one JSON object per image) atomically."""
    path = Path(directory) / GUIDANCE_NAME
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    return path


def read_guidance(directory: str | Path) -> list[dict]:
    """The rows of a set's ``guidance.jsonl`` (``directory``: the set, or its manifest)."""
    path = Path(directory)
    path = (path.parent if path.is_file() else path) / GUIDANCE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"guidance diagnostics not found: {path} (generated with record_guidance: false, or "
            "before diagnostics existed)"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
