"""A dataset over a list of image files, with clear errors for unreadable images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from datamodules.layout import Sample


class CorruptImageError(OSError):
    """An image file that PIL cannot decode."""


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB, raising :class:`CorruptImageError` that names the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise CorruptImageError(f"cannot decode image {path}: {err}") from err


def verify_images(samples: Sequence[Sample], what: str, decode: bool = False) -> None:
    """Open every image's header (``decode``: decode it fully) before any work starts.

    Raises:
        CorruptImageError: Naming how many files failed and the first few.
    """
    bad = []
    for sample in samples:
        try:
            with Image.open(sample.path) as image:  # reads the header only
                if decode:
                    image.load()
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            bad.append(f"{sample.path} ({err})")
    if bad:
        raise CorruptImageError(
            f"{len(bad)} of {len(samples)} images of {what} cannot be read: {bad[:3]}"
            f"{' ...' if len(bad) > 3 else ''}; fix or remove them, or set skip_corrupt: true"
        )


def drop_corrupt(samples: Sequence[Sample], what: str) -> list[Sample]:
    """Return the decodable samples, warning with the count and the first paths dropped."""
    kept, skipped = [], []
    for sample in samples:
        try:
            load_rgb(sample.path)
            kept.append(sample)
        except CorruptImageError:
            skipped.append(sample.path)
    if skipped:
        rank_zero_warn(
            f"skip_corrupt: skipped {len(skipped)} unreadable image(s) of {len(samples)} in "
            f"{what}: {skipped[:5]}{' ...' if len(skipped) > 5 else ''}"
        )
    return kept


class ImageListDataset(Dataset):
    """``(image, label)`` pairs from a list of samples.

    Args:
        samples: Paths and labels.
        transform: Applied to the PIL image.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = load_rgb(sample.path)
        if self.transform is not None:
            image = self.transform(image)
        return image, sample.label

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]
