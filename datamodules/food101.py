"""Food-101 and Food101-LT, read from a local root in Food-101's own layout. Never downloads."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from datamodules.layout import Sample, read_class_names, read_split, require_dir
from datamodules.long_tail import ExponentialProfile, exponential_counts, subsample_per_class
from datamodules.long_tailed import DatasetIndex, LongTailDataModule


class Food101LT(LongTailDataModule):
    """Food-101 with a long-tailed training split and the balanced test split.

    The training split is, in order of preference: ``train_split`` (a file of ``class/id`` lines,
    as the LT benchmarks ship them); a generated ``long_tail`` profile over ``meta/train.txt``
    (a stand-in, reported as such); or the full balanced ``meta/train.txt``.

    Args:
        root: Food-101 root (``<root>/images``, ``<root>/meta``).
        train_split: Long-tailed split file; relative paths are taken relative to ``root``.
        long_tail: Generated profile used when there is no split file
            (Food101-LT: ``n_max=750, imbalance_factor=187.5``).
        test_split: Test list, relative to ``root``.
        **kwargs: See :class:`LongTailDataModule`.
    """

    def __init__(
        self,
        root: str,
        train_split: str | None = None,
        long_tail: ExponentialProfile | None = None,
        test_split: str = "meta/test.txt",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.train_split = train_split
        self.long_tail = long_tail
        self.test_split = test_split

    def read_index(self) -> DatasetIndex:
        require_dir(self.root, "Food-101 root")
        class_names = read_class_names(self.root / "meta" / "classes.txt")
        images = self.root / "images"
        require_dir(images, "Food-101 image directory")
        test = read_split(self.root / self.test_split, images, class_names)
        if self.train_split is not None:
            train = read_split(self.root / self.train_split, images, class_names)
            source = f"split file {self.train_split}"
        else:
            train = read_split(self.root / "meta" / "train.txt", images, class_names)
            source = "meta/train.txt (balanced)"
            if self.long_tail is not None:
                train = _apply_profile(train, self.long_tail, len(class_names))
                source = self.long_tail.describe()
                rank_zero_warn(f"{type(self).__name__}: training split is a {source}")
        return DatasetIndex(class_names, train, test, source)


def _apply_profile(train: list[Sample], profile: ExponentialProfile, num_classes: int) -> list[Sample]:
    counts = exponential_counts(profile.n_max, profile.imbalance_factor, num_classes)
    keep = subsample_per_class([s.label for s in train], counts, profile.seed)
    return [train[i] for i in keep]
