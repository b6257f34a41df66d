"""Real long-tailed training set + synthetic sets (manifests), optionally with Mixup.

The real datamodule is injected (any :class:`LongTailDataModule`) and keeps serving validation,
test and predict; this module only changes what training sees. The model's ``dataset_info`` is
the real one (head/tail are defined by the real training counts) plus ``training_counts``, real +
synthetic per class, from which long-tail losses take their class priors.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.dataset import ImageListDataset
from datamodules.decoded_cache import DecodedImages, build_decoded_cache
from datamodules.device_batch import (
    PlannedUint8Collate,
    Uint8Batch,
    collate_uint8,
    to_training_batch,
)
from datamodules.epoch_seeds import (
    EpochShuffle,
    SeededDataset,
    SeededSampler,
    TrainerEpoch,
    run_seed,
)
from datamodules.info import DatasetInfo
from datamodules.layout import Sample
from datamodules.long_tailed import LongTailDataModule
from datamodules.manifest import read_manifest
from datamodules.mixup import MixupCollate, MixupPlanner, PlannedBatches

MixMode = Literal["none", "mixup_random", "mixup_all"]


class RealSyntheticDataModule(L.LightningDataModule):
    """Train on real + synthetic images.

    Args:
        real: The real dataset (its loaders serve val/test/predict unchanged).
        synthetic: ``manifest.jsonl`` files (or directories holding one) of generated sets.
        mode: ``"none"`` (plain union), ``"mixup_random"`` (SYNAuG) or ``"mixup_all"``; see
            :mod:`datamodules.mixup`.
        mixup_alpha: Beta(a, a) parameter of the per-batch mixing weight.
        max_synthetic_per_class: Cap on synthetic images per class (manifest order).
        synthetic_ratio: Cap per class of synthetic : real images (e.g. ``1.0``: at most as many
            synthetic as real images of that class).
        tail_only: Use synthetic images of tail classes only.
        input_path: ``"decoded_cache"``: every training image is decoded once into a uint8
            memory-mapped cache (:mod:`datamodules.decoded_cache`), workers only crop and flip,
            and float conversion, normalisation and Mixup run on the device; ``"files"``:
            decode, crop, normalise and mix in the workers. The same crop and plan give the
            same batch in both.
        cache_dir: Where decoded caches are kept (keyed by the image list and the resize).
        seed: Seed of each epoch's order, batch plans and augmentation; ``None``: the run's
            ``seed_everything`` (see :mod:`datamodules.epoch_seeds`).
    """

    def __init__(
        self,
        real: LongTailDataModule,
        synthetic: list[str] | None = None,
        mode: MixMode = "mixup_random",
        mixup_alpha: float = 1.0,
        max_synthetic_per_class: int | None = None,
        synthetic_ratio: float | None = None,
        tail_only: bool = False,
        seed: int | None = None,
        input_path: Literal["decoded_cache", "files"] = "decoded_cache",
        cache_dir: str = ".cache/lt-food-synth/decoded",
    ) -> None:
        super().__init__()
        if mode not in ("none", "mixup_random", "mixup_all"):
            raise ValueError(f"mode={mode!r}: expected 'none', 'mixup_random' or 'mixup_all'")
        if input_path not in ("decoded_cache", "files"):
            raise ValueError(f"input_path={input_path!r}: expected 'decoded_cache' or 'files'")
        if getattr(real, "resample", "none") != "none":
            raise ValueError(
                f"real.resample={real.resample!r}: class resampling of the real set is not applied "
                "to real + synthetic training; set it to 'none' (the synthetic set fills classes)"
            )
        self.real = real
        self.synthetic = list(synthetic or [])
        self.mode = mode
        self.mixup_alpha = mixup_alpha
        self.max_synthetic_per_class = max_synthetic_per_class
        self.synthetic_ratio = synthetic_ratio
        self.tail_only = tail_only
        self.seed = seed
        self.input_path = input_path
        self.cache_dir = cache_dir
        self.synthetic_samples: list[Sample] = []
        self.train_set: ConcatDataset | None = None
        self._info: DatasetInfo | None = None

    @property
    def dataset_info(self) -> DatasetInfo:
        """The real dataset's info, with ``training_counts`` = real + selected synthetic."""
        if self._info is None:
            real = self.real.dataset_info
            self.synthetic_samples = self.select_synthetic()
            added = Counter(s.label for s in self.synthetic_samples)
            counts = [n + added[c] for c, n in enumerate(real.class_counts)]
            self._info = replace(real, training_counts=counts)
        return self._info

    def prepare_data(self) -> None:
        self.real.prepare_data()
        if self.input_path == "decoded_cache":  # one process per node decodes every image
            self._decoded_cache()

    def _decoded_cache(self):
        self.dataset_info  # noqa: B018 - selects the synthetic images
        samples = [*self.real.index.train, *self.synthetic_samples]
        return build_decoded_cache(samples, self.real.resize_size, self.cache_dir), samples

    def select_synthetic(self) -> list[Sample]:
        """Every manifest row, validated, then filtered by the per-class options."""
        info = self.real.dataset_info
        by_class: dict[int, list[Sample]] = defaultdict(list)
        for manifest in self.synthetic:
            for s in read_manifest(manifest, info.class_names):
                by_class[s.label].append(Sample(s.path, s.label))
        chosen: list[Sample] = []
        for label in sorted(by_class):
            if self.tail_only and info.head_mask[label]:
                continue
            cap = len(by_class[label])
            if self.max_synthetic_per_class is not None:
                cap = min(cap, self.max_synthetic_per_class)
            if self.synthetic_ratio is not None:
                cap = min(cap, int(self.synthetic_ratio * info.class_counts[label]))
            chosen += by_class[label][:cap]
        return chosen

    def setup(self, stage: str | None = None) -> None:
        self.real.setup(stage)
        real_train = self.real.datasets["train"]
        self.dataset_info  # noqa: B018 - reads and selects the synthetic images once
        if self.input_path == "decoded_cache":
            root, samples = self._decoded_cache()
            self.train_set = DecodedImages(root, [s.label for s in samples], self.real.train_crop)
        else:
            synthetic = ImageListDataset(self.synthetic_samples, real_train.transform)
            self.train_set = ConcatDataset([real_train, synthetic])
        rank_zero_info(
            f"{type(self).__name__}: {len(real_train)} real + {len(self.synthetic_samples)} "
            f"synthetic training images from {len(self.synthetic)} manifest(s), mode={self.mode}, "
            f"input path {self.input_path}"
        )

    @property
    def is_synthetic(self) -> list[bool]:
        n_real = len(self.real.datasets["train"])
        return [False] * n_real + [True] * len(self.synthetic_samples)

    def train_dataloader(self) -> DataLoader:
        common = dict(num_workers=self.real.num_workers,
                      persistent_workers=self.real.num_workers > 0,
                      pin_memory=torch.cuda.is_available())
        seed, cached = run_seed(self.seed), self.input_path == "decoded_cache"
        if self.mode == "none":
            order = TrainerEpoch(SeededSampler(EpochShuffle(len(self.train_set), seed), seed), self)
            return DataLoader(SeededDataset(self.train_set), batch_size=self.real.batch_size,
                              sampler=order, collate_fn=collate_uint8 if cached else None,
                              **common)
        planner = MixupPlanner(self.mode, self.is_synthetic, self.real.batch_size, seed)
        planner = TrainerEpoch(planner, self)
        if cached:
            collate = PlannedUint8Collate(self.mixup_alpha)
        else:
            collate = MixupCollate(self.dataset_info.num_classes, self.mixup_alpha)
        return DataLoader(PlannedBatches(self.train_set), sampler=planner, batch_size=None,
                          collate_fn=collate, **common)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """The decoded cache's uint8 batches become model input here, on the device."""
        if isinstance(batch, Uint8Batch):
            return to_training_batch(batch, self.dataset_info.num_classes)
        return batch

    def val_dataloader(self) -> DataLoader:
        return self.real.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.real.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.real.predict_dataloader()
