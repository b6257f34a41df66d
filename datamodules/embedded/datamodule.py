"""The embedded dataset as a DataModule: generated once into a cache, then read by Food101LT."""

from __future__ import annotations

from pathlib import Path

from datamodules.embedded.build import (
    EmbeddedSettings,
    dataset_dir,
    ensure_embedded_dataset,
    read_confusable_pairs,
    read_planted_submodes,
)
from datamodules.food101 import Food101LT
from datamodules.long_tailed import DatasetIndex


class EmbeddedFoodLT(Food101LT):
    """Ten generated "dishes" with planted sub-modes and confusable pairs, long-tailed.

    The images are generated deterministically from ``settings`` into
    ``<cache_dir>/embedded-v<FORMAT_VERSION>-<fingerprint>`` in Food-101's layout, so the
    Food-101 loader is the code that reads them. The long-tailed split is the dataset's own
    ``meta/train_lt.txt``.

    Args:
        cache_dir: Where generated datasets are kept (shared by runs; keyed by the settings).
        settings: Generator settings (image size, n_max, imbalance factor, seed, ...).
        num_head_classes: Head = this many classes with the most training images.
        image_size: Model input size (default: the generated size).
        resize_size: Eval resize before the center crop (default: ``image_size``).
        **kwargs: See :class:`~datamodules.long_tailed.LongTailDataModule`.
    """

    def __init__(
        self,
        cache_dir: str = ".cache/lt-food-synth",
        settings: EmbeddedSettings = EmbeddedSettings(),
        num_head_classes: int | None = 3,
        image_size: int | None = None,
        resize_size: int | None = None,
        **kwargs,
    ) -> None:
        root = dataset_dir(cache_dir, settings)
        super().__init__(
            root=str(root),
            train_split="meta/train_lt.txt",
            num_head_classes=num_head_classes,
            image_size=image_size or settings.image_size,
            resize_size=resize_size or image_size or settings.image_size,
            **kwargs,
        )
        self.cache_dir = cache_dir
        self.settings = settings

    def read_index(self) -> DatasetIndex:
        ensure_embedded_dataset(self.cache_dir, self.settings)
        index = super().read_index()
        return DatasetIndex(
            index.class_names, index.train, index.test,
            f"embedded dataset {Path(self.root).name} (meta/train_lt.txt)",
        )

    def planted_submodes(self) -> dict[str, str]:
        """``"class/id"`` -> planted sub-mode name, for scoring the clustering."""
        self.index  # noqa: B018 - make sure the data exists
        return read_planted_submodes(self.root)

    def confusable_pairs(self) -> list[tuple[str, str]]:
        """The planted confusable class pairs, for scoring the negative-class selection."""
        self.index  # noqa: B018
        return read_confusable_pairs(self.root)
