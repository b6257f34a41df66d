"""Read image lists in the Food-101 layout (also used for VFN-LT's split lists).

Food-101: ``<root>/images/<class>/<id>.jpg``, ``<root>/meta/classes.txt`` and split files with
lines ``class/id`` (no extension). Every error names the file, the line and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOOD101_LAYOUT = (
    "<root>/images/<class>/<id>.jpg, <root>/meta/classes.txt (one class per line), "
    "<root>/meta/train.txt and <root>/meta/test.txt (lines 'class/id')"
)


class DatasetLayoutError(ValueError):
    """The files on disk do not match the layout the loader expects."""


@dataclass(frozen=True)
class Sample:
    """One image of a list: its path and integer label."""

    path: str
    label: int


def require_file(path: Path, what: str, layout: str = FOOD101_LAYOUT) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}. Expected layout: {layout}")
    return path


def require_dir(path: Path, what: str, layout: str = FOOD101_LAYOUT) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}. Expected layout: {layout}")
    return path


def read_class_names(path: Path) -> list[str]:
    """Class names, one per non-empty line, in file order."""
    require_file(path, "class list")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetLayoutError(f"{path}: class names listed more than once: {duplicates}")
    if not names:
        raise DatasetLayoutError(f"{path}: no class names")
    return names


def read_split(
    split_file: Path, image_dir: Path, class_names: list[str], suffix: str = ".jpg"
) -> list[Sample]:
    """Samples of a split file whose lines are ``class/relative_id``.

    Args:
        split_file: The list.
        image_dir: Directory the ids are relative to (``<root>/images`` for Food-101).
        class_names: Label order; a line naming another class is an error.
        suffix: Appended to each id (Food-101 lines have no extension; VFN lists do).

    Raises:
        FileNotFoundError: The split file, or an image a line names, does not exist.
        DatasetLayoutError: A malformed line or an unknown class.
    """
    require_file(split_file, "split file")
    class_to_idx = {name: i for i, name in enumerate(class_names)}
    samples: list[Sample] = []
    for number, raw in enumerate(split_file.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        class_name, sep, _ = line.partition("/")
        if not sep:
            raise DatasetLayoutError(
                f"{split_file}:{number}: {line!r} is not of the form 'class/id'"
            )
        if class_name not in class_to_idx:
            raise DatasetLayoutError(
                f"{split_file}:{number}: class {class_name!r} is not in the class list "
                f"({len(class_names)} classes)"
            )
        path = image_dir / f"{line}{suffix}"
        if not path.is_file():
            raise FileNotFoundError(
                f"{split_file}:{number}: {line!r} names an image that does not exist: {path}"
            )
        samples.append(Sample(str(path), class_to_idx[class_name]))
    if not samples:
        raise DatasetLayoutError(f"{split_file}: the split lists no images")
    return samples
