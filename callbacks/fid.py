"""FID and IS of generated images during a diffusion fine-tune, every N epochs.

The metrics (and the feature network) live in this callback, never on the LightningModule: the
Inception weights stay out of checkpoints. The module only has to implement
:class:`GenerativeModel`. Generation is sharded: image ``i`` of a fixed request list (label
``classes[i % C]``, seed ``seed + i``) is made by rank ``i % world_size``; every rank updates
its metric with its share and every rank calls ``compute`` (torchmetrics sums the states), so
the numbers are the same with 1 or N processes. Real statistics come from the cache of
:func:`~lightning_modules.image_metrics.real_statistics` and are placed on rank 0 only (the
states are sum-reduced).

Logged as ``val/fid_<extractor>`` and ``val/is_<extractor>`` (``self.log``: every logger, W&B
included) and appended to ``<run_dir>/generative_metrics.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import Tensor

from datamodules.long_tailed import LongTailDataModule
from lightning_modules.image_metrics import (
    DEFAULT_STATS_CACHE,
    fid_metric,
    inception_score,
    is_metric,
    real_statistics,
)
from lightning_modules.metric_features import MetricFeatures, resize_for_metric


@runtime_checkable
class GenerativeModel(Protocol):
    """What a LightningModule implements to be measured by :class:`GenerativeMetricsCallback`."""

    def generate(self, labels: Tensor, seeds: Sequence[int]) -> Tensor:
        """Images of classes ``labels`` ``(N,)`` (int64, on the module's device), image ``i``
        made from ``seeds[i]`` alone (one generator per seed): ``(N, 3, H, W)`` floats in
        [0, 1]. Called under ``torch.no_grad()`` with the module in eval mode."""
        ...


def real_datamodule(datamodule: L.LightningDataModule | None) -> LongTailDataModule:
    """The real dataset of a run: the datamodule itself or the one it wraps (``.real``)."""
    real = getattr(datamodule, "real", datamodule)
    if not isinstance(real, LongTailDataModule):
        raise TypeError(
            f"GenerativeMetricsCallback needs the real images: expected the trainer's datamodule "
            f"to be a LongTailDataModule or to wrap one as `.real`, got {type(datamodule).__name__}"
        )
    return real


class GenerativeMetricsCallback(L.Callback):
    """Generate ``num_samples`` images every ``every_n_epochs`` epochs; log FID and IS.

    Args:
        extractor: The feature network (``ResNetFeatures`` -> ``fid_resnet18``;
            ``InceptionFeatures`` with a local weights file -> ``fid_inception``).
        every_n_epochs: Measure after every this many training epochs.
        num_samples: Generated images per measurement (at least the world size and 2).
        batch_size: Images per ``generate`` call on each rank.
        seed: Seed of image 0 (image ``i`` uses ``seed + i``), fixed across measurements.
        classes: Class indices to generate, cycled (None: every class of the dataset).
        image_size: Real and generated images are resized and center-cropped to this size
            (None: the real datamodule's ``image_size``).
        real_split: Split of the real dataset the statistics come from.
        stats_cache_dir: Cache of real statistics (None: computed every fit).
        is_splits: Splits of the Inception Score.
        filename: CSV in the run directory.
    """

    def __init__(
        self,
        extractor: MetricFeatures,
        every_n_epochs: int = 1,
        num_samples: int = 64,
        batch_size: int = 16,
        seed: int = 0,
        classes: list[int] | None = None,
        image_size: int | None = None,
        real_split: Literal["train", "test"] = "train",
        stats_cache_dir: str | None = DEFAULT_STATS_CACHE,
        is_splits: int = 1,
        filename: str = "generative_metrics.csv",
    ) -> None:
        for arg, value in (("every_n_epochs", every_n_epochs), ("num_samples", num_samples),
                           ("batch_size", batch_size), ("is_splits", is_splits)):
            if value < 1:
                raise ValueError(f"GenerativeMetricsCallback: {arg}={value}, expected >= 1")
        if num_samples < 2:
            raise ValueError(
                f"GenerativeMetricsCallback: num_samples={num_samples}, expected >= 2 (FID)"
            )
        self.extractor = extractor.requires_grad_(False).eval()
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.classes = classes
        self.image_size = image_size
        self.real_split = real_split
        self.stats_cache_dir = stats_cache_dir
        self.is_splits = is_splits
        self.filename = filename
        self.fid = None
        self.inception_score = None

    @property
    def keys(self) -> tuple[str, str]:
        return f"fid_{self.extractor.name}", f"is_{self.extractor.name}"

    def requests(self, num_classes: int) -> tuple[Tensor, list[int]]:
        """Labels ``(M,)`` and seeds of all ``num_samples`` images, before sharding."""
        classes = self.classes if self.classes is not None else list(range(num_classes))
        bad = [c for c in classes if not 0 <= c < num_classes]
        if not classes or bad:
            raise ValueError(f"classes={self.classes}: expected indices in [0, {num_classes})")
        labels = torch.tensor([classes[i % len(classes)] for i in range(self.num_samples)])
        return labels, [self.seed + i for i in range(self.num_samples)]

    # ---- Lightning hooks ----------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not isinstance(pl_module, GenerativeModel):
            raise TypeError(
                f"GenerativeMetricsCallback: {type(pl_module).__name__} has no "
                "generate(labels, seeds) method (see callbacks.fid.GenerativeModel)"
            )
        if self.num_samples < trainer.world_size:
            raise ValueError(f"num_samples={self.num_samples}: expected >= world size "
                             f"{trainer.world_size} (every rank generates at least one image)")
        # created here, in each process (safe under every DDP launcher)
        self.fid = fid_metric(self.extractor.num_features, reset_real_features=False)
        self.inception_score = is_metric(self.is_splits)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        self.extractor.to(device)
        self.fid.to(device)
        self.inception_score.to(device)
        # the real states are sum-reduced across ranks: rank 0 holds them, the others zeros
        if trainer.is_global_zero:
            real = real_datamodule(trainer.datamodule)
            samples = getattr(real.index, self.real_split)
            stats = real_statistics(
                self.extractor, samples,
                f"{type(real).__qualname__}:{getattr(real, 'root', '')}:{self.real_split}",
                self._image_size(trainer), cache_dir=self.stats_cache_dir,
                batch_size=self.batch_size, device=device,
            )
            stats["all"].place_into(self.fid)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        fid, is_mean, is_std = self.measure(trainer, pl_module)
        fid_key, is_key = self.keys
        # the same value on every rank (compute synced the states): the mean is a no-op
        pl_module.log_dict({f"val/{fid_key}": fid, f"val/{is_key}": is_mean}, sync_dist=True)
        rank_zero_info(
            f"epoch {trainer.current_epoch}: {fid_key} {fid:.4f}, {is_key} {is_mean:.4f}"
        )
        self._append_csv(trainer, {
            "epoch": trainer.current_epoch, "step": trainer.global_step,
            "num_samples": self.num_samples, fid_key: f"{fid:.6f}", is_key: f"{is_mean:.6f}",
            f"{is_key}_std": f"{is_std:.6f}",
        })

    # ---- the measurement ----------------------------------------------------------------------
    @torch.no_grad()
    def measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> tuple[float, float, float]:
        """Generate this rank's share, update, compute on every rank: (FID, IS mean, IS std)."""
        num_classes = real_datamodule(trainer.datamodule).num_classes
        labels, seeds = self.requests(num_classes)
        mine = list(range(trainer.global_rank, self.num_samples, trainer.world_size))
        size = self._image_size(trainer)
        self.fid.reset()  # keeps the real states (reset_real_features=False)
        self.inception_score.reset()
        was_training = pl_module.training
        pl_module.eval()
        try:
            for start in range(0, len(mine), self.batch_size):
                chunk = mine[start : start + self.batch_size]
                images = pl_module.generate(labels[chunk].to(pl_module.device),
                                            [seeds[i] for i in chunk])
                if images.ndim != 4 or images.shape[:2] != (len(chunk), 3):
                    raise ValueError(f"generate returned shape {tuple(images.shape)}, expected "
                                     f"({len(chunk)}, 3, H, W)")
                output = self.extractor(resize_for_metric(images.float(), size))
                self.fid.update(output.features, real=False)
                self.inception_score.update(output.logits)
        finally:
            pl_module.train(was_training)
        fid = float(self.fid.compute())
        is_mean, is_std = inception_score(self.inception_score, seed=self.seed)
        return fid, is_mean, is_std

    def _image_size(self, trainer: L.Trainer) -> int:
        return self.image_size or real_datamodule(trainer.datamodule).image_size

    @rank_zero_only
    def _append_csv(self, trainer: L.Trainer, row: dict) -> None:
        path = Path(trainer.default_root_dir) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
