"""The base DataModule of every long-tailed classification dataset in the project.

Subclasses only say where the images are (:meth:`LongTailDataModule.read_index`); this class
builds datasets, loaders and the :class:`DatasetInfo` (class names, per-class training counts,
head mask) that LightningCLI links to the model. The index is read lazily and once: split files
are small, so reading them when the CLI links arguments costs little.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.dataset import ImageListDataset, drop_corrupt, verify_images
from datamodules.epoch_seeds import (
    EpochShuffle,
    SeededDataset,
    SeededSampler,
    TrainerEpoch,
    run_seed,
)
from datamodules.info import DatasetInfo
from datamodules.layout import Sample
from datamodules.long_tail import head_mask, hold_out_per_class
from datamodules.resampling import ClassResampler, ResampleMode
from datamodules.transforms import eval_transform, train_crop, train_transform


@dataclass(frozen=True)
class DatasetIndex:
    """The image lists of a dataset: what :meth:`LongTailDataModule.read_index` returns."""

    class_names: list[str]
    train: list[Sample]
    test: list[Sample]
    split_source: str


class LongTailDataModule(L.LightningDataModule):
    """Long-tailed training set, balanced test set, head/tail split.

    Args:
        batch_size: Per-process batch size.
        num_workers: DataLoader workers.
        image_size: Crop size fed to the model.
        resize_size: Eval resize (shorter side) before the center crop; default: ``image_size``
            x 8 / 7 (256 for 224). A resize far larger than the crop warns: the evaluation
            would see a small centre patch.
        crop_scale: RandomResizedCrop scale range for training.
        crop_ratio: RandomResizedCrop aspect-ratio range.
        flip: Random horizontal flips in training.
        num_head_classes: Head = this many classes with the most training images.
        head_threshold: Alternatively, head = classes with at least this many images.
        skip_corrupt: Drop undecodable images at setup (counted and logged) instead of failing.
        verify_images: Before any work starts, open every image's header (``"header"``, a
            fraction of a millisecond per image), decode every image (``"decode"``) or neither
            (``"none"``); an unreadable image fails then, naming the file, not in epoch 0.
        predict_split: Which split ``predict`` iterates (eval transforms), e.g. for features.
        resample: Class-aware resampling of the training set: ``"oversample"`` (ROS),
            ``"undersample"`` (RUS) or ``"class_balanced"``; ``"none"`` shuffles.
        val_per_class: 0 validates on the test set, as the long-tailed benchmarks report it
            (the ``best`` checkpoint and any setting chosen on ``val/*`` then saw the test
            images). N > 0 holds out a seeded N test images per class as the validation set
            and tests on the rest, so that selection never touches the test images.
        seed: Seed of each epoch's order, resampling and augmentation, which depend on it and
            the epoch number only (see :mod:`datamodules.epoch_seeds`); ``None``: the run's
            ``seed_everything``.
        holdout_seed: Seed of the validation hold-out (fixed across training seeds, so that
            runs of several seeds are tested on the same images).
    """

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        image_size: int = 224,
        resize_size: int | None = None,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        num_head_classes: int | None = None,
        head_threshold: int | None = None,
        skip_corrupt: bool = False,
        verify_images: Literal["header", "decode", "none"] = "header",
        predict_split: Literal["train", "test"] = "train",
        resample: ResampleMode = "none",
        val_per_class: int = 0,
        seed: int | None = None,
        holdout_seed: int = 0,
    ) -> None:
        super().__init__()
        resize_size = round(image_size * 8 / 7) if resize_size is None else resize_size
        if resize_size > 2 * image_size:
            rank_zero_warn(
                f"resize_size={resize_size} is more than twice image_size={image_size}: the "
                "evaluation center-crops a small patch of each image (leave resize_size unset "
                "to follow image_size)"
            )
        if resize_size < image_size:
            raise ValueError(f"resize_size={resize_size}: expected >= image_size={image_size}")
        if val_per_class < 0:
            raise ValueError(f"val_per_class={val_per_class}: expected >= 0")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.resize_size = resize_size
        self.crop_scale = tuple(crop_scale)
        self.crop_ratio = tuple(crop_ratio)
        self.flip = flip
        self.num_head_classes = num_head_classes
        self.head_threshold = head_threshold
        self.skip_corrupt = skip_corrupt
        if verify_images not in ("header", "decode", "none"):
            raise ValueError(
                f"verify_images={verify_images!r}: expected 'header', 'decode' or 'none'"
            )
        self.verify_images = verify_images
        self.predict_split = predict_split
        self.resample = resample
        self.val_per_class = val_per_class
        self.seed = seed
        self.holdout_seed = holdout_seed
        self._index: DatasetIndex | None = None
        self._info: DatasetInfo | None = None
        self.datasets: dict[str, Dataset] = {}

    # ---- what subclasses provide -------------------------------------------------------------
    def read_index(self) -> DatasetIndex:
        """Read (and validate) the class list and the train/test image lists."""
        raise NotImplementedError

    # ---- the dataset, read once --------------------------------------------------------------
    @property
    def index(self) -> DatasetIndex:
        if self._index is None:
            index = self.read_index()
            if self.skip_corrupt:
                index = DatasetIndex(
                    index.class_names,
                    drop_corrupt(index.train, "the training split"),
                    drop_corrupt(index.test, "the test split"),
                    index.split_source,
                )
            elif self.verify_images != "none":
                for samples, what in ((index.train, "the training split"),
                                      (index.test, "the test split")):
                    verify_images(samples, what, decode=self.verify_images == "decode")
            self._index = index
            rank_zero_info(
                f"{type(self).__name__}: {len(index.class_names)} classes, "
                f"{len(index.train)} training / {len(index.test)} test images ({index.split_source})"
            )
        return self._index

    @property
    def dataset_info(self) -> DatasetInfo:
        if self._info is None:
            index = self.index
            counter = Counter(s.label for s in index.train)
            counts = [counter.get(c, 0) for c in range(len(index.class_names))]
            empty = [n for n, k in zip(index.class_names, counts) if k == 0]
            if empty:
                raise ValueError(f"the training split has no image of classes {empty}")
            mask = head_mask(counts, self.num_head_classes, self.head_threshold)
            self._info = DatasetInfo(index.class_names, counts, mask, index.split_source)
        return self._info

    @property
    def num_classes(self) -> int:
        return self.dataset_info.num_classes

    # ---- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.index  # noqa: B018 - reads, validates (and for generated data, writes) once

    def setup(self, stage: str | None = None) -> None:
        index = self.index
        eval_tf = eval_transform(self.image_size, self.resize_size)
        val, test = self.validation_split()
        self.datasets = {
            "train": ImageListDataset(
                index.train,
                train_transform(self.image_size, self.crop_scale, self.crop_ratio, self.flip),
            ),
            "val": ImageListDataset(val, eval_tf),
            "test": ImageListDataset(test, eval_tf),
            "predict": ImageListDataset(
                index.train if self.predict_split == "train" else index.test, eval_tf
            ),
        }

    @property
    def train_crop(self):
        """The training crop and flip on uint8 tensors (the decoded-cache path's transform)."""
        return train_crop(self.image_size, self.crop_scale, self.crop_ratio, self.flip)

    def validation_split(self) -> tuple[list[Sample], list[Sample]]:
        """(validation images, test images): both the test split unless ``val_per_class``."""
        test = self.index.test
        if not self.val_per_class:
            return test, test
        held, rest = hold_out_per_class(
            [s.label for s in test], self.num_classes, self.val_per_class, self.holdout_seed
        )
        return [test[i] for i in held], [test[i] for i in rest]

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        train, seed = self.datasets["train"], run_seed(self.seed)
        if self.resample == "none":
            order = EpochShuffle(len(train), seed)
        else:
            order = ClassResampler(train.labels, self.resample, seed)
        sampler = TrainerEpoch(SeededSampler(order, seed), self)
        return self._loader(SeededDataset(train), sampler)

    def val_dataloader(self) -> DataLoader:
        """The (balanced) test set, or the part held out of it (``val_per_class``)."""
        return self._loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"])

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["predict"])
