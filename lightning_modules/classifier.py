"""The ResNet-18 long-tailed classifier: CE baseline, long-tail losses, real + synthetic training."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable

from datamodules.atomic import atomic_open
from datamodules.info import DatasetInfo
from lightning_modules.backbone import (
    build_resnet18,
    load_classifier_checkpoint,
    penultimate_features,
)
from lightning_modules.losses import CrossEntropy, LossFactory
from lightning_modules.metrics import GroupedAccuracy, GroupedAccuracyResult
from lightning_modules.schedules import ScheduleName, warmup_then


class LongTailClassifier(L.LightningModule):
    """ResNet-18 trained on a long-tailed dataset; reports overall / head / tail top-1.

    Args:
        dataset_info: Class names, training counts and head mask (linked from the datamodule).
        weights_path: Local ResNet-18 weights to start from (``None``: random init).
        small_input_stem: CIFAR-style stem for small images (see :func:`build_resnet18`).
        width: Channels of the first stage (64: ResNet-18; the embedded dataset uses 32).
        cosine_head: Cosine-similarity final layer (logits in [-1, 1]), which LDAM expects.
        loss: ``class_counts -> loss module``; cross-entropy by default. It gets the counts of
            what training sees (``dataset_info.prior_counts``: real + synthetic when mixed).
        optimizer: Optimizer factory (the paper: SGD, momentum 0.9, lr 0.001 / 0.01).
        lr_schedule: ``"cosine"`` (the paper) or ``"constant"``, stepped per batch.
        warmup_epochs: Linear warm-up length in epochs.
        channels_last: Use the channels-last memory format on GPU.
        posthoc_logit_adjustment: Post-hoc logit adjustment at evaluation (Menon et al.):
            ``logits - tau * log(prior)`` with the training prior; 0 disables it.
        init_checkpoint: Start from the weights of a classifier checkpoint of this project
            (a second ``fit``, e.g. SYNAuG's last step).
        freeze_backbone: Train only the final layer; the backbone, BatchNorm statistics
            included, stays frozen (SYNAuG's last step, with ``resample: class_balanced``).
    """

    def __init__(
        self,
        dataset_info: DatasetInfo | None = None,
        weights_path: str | None = None,
        small_input_stem: bool = False,
        width: int = 64,
        cosine_head: bool = False,
        loss: LossFactory = CrossEntropy,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_schedule: ScheduleName = "cosine",
        warmup_epochs: float = 0.0,
        channels_last: bool = True,
        posthoc_logit_adjustment: float = 0.0,
        init_checkpoint: str | None = None,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        if dataset_info is None:
            raise ValueError(
                "LongTailClassifier.dataset_info is missing: it is linked from the datamodule "
                "by the CLI; pass a datamodules.DatasetInfo when building the model in Python"
            )
        # Plain types only in the checkpoint, so it loads with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["loss", "optimizer", "dataset_info"])
        self.hparams["dataset_info"] = asdict(dataset_info)
        self.dataset_info = dataset_info
        self.model = build_resnet18(
            dataset_info.num_classes, weights_path, small_input_stem, cosine_head, width
        )
        if init_checkpoint is not None:
            load_classifier_checkpoint(self.model, init_checkpoint)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.model.requires_grad_(False)
            self.model.fc.requires_grad_(True)
        prior = torch.tensor(dataset_info.prior_counts, dtype=torch.float32)
        self.register_buffer(
            "eval_adjustment", posthoc_logit_adjustment * torch.log(prior / prior.sum()),
            persistent=False,
        )
        self.criterion = loss(dataset_info.prior_counts)  # real + synthetic when mixed
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.channels_last = channels_last
        self.accuracy = torch.nn.ModuleDict(
            {stage: GroupedAccuracy(dataset_info.head_mask) for stage in ("val", "test")}
        )

    # ---- model -------------------------------------------------------------------------------
    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.is_cuda:
            return images.contiguous(memory_format=torch.channels_last)
        return images.contiguous()  # one layout on the CPU: the same convolution either input path

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self._prepare(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (eval transforms expected), ``(B, 8 * width)``."""
        return penultimate_features(self.model, self._prepare(images))

    def on_fit_start(self) -> None:
        if self.channels_last and self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        if self.freeze_backbone:  # frozen BatchNorm statistics: the backbone stays in eval mode
            self.model.eval()
            self.model.fc.train()

    # ---- one step for train / val / test -----------------------------------------------------
    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        images, target = batch
        logits = self(images)
        loss = self.criterion(logits, target)
        if stage != "train":
            logits = logits - self.eval_adjustment
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", sync_dist=stage != "train",
                 batch_size=images.shape[0])
        if stage in self.accuracy:
            self.accuracy[stage].update(logits, target)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def _report(self, stage: str) -> None:
        metric = self.accuracy[stage]
        result = metric.compute()  # every rank computes (synchronised states)
        metric.reset()
        for group in ("overall", "head", "tail"):
            self.log(f"{stage}/acc_{group}", getattr(result, group).float(),
                     prog_bar=group == "overall")
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._write_per_class_csv(stage, result)

    def _write_per_class_csv(self, stage: str, result: GroupedAccuracyResult) -> None:
        path = Path(self.trainer.default_root_dir) / f"per_class_accuracy_{stage}.csv"
        info = self.dataset_info
        with atomic_open(path) as f:
            writer = csv.writer(f)
            writer.writerow(["class_index", "class_name", "is_head", "train_count",
                             "correct", "total", "accuracy"])
            for c, name in enumerate(info.class_names):
                writer.writerow([c, name, info.head_mask[c], info.class_counts[c],
                                 int(result.correct[c]), int(result.total[c]),
                                 f"{float(result.per_class[c]):.4f}"])

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        total = self.trainer.estimated_stepping_batches
        epochs = max(self.trainer.max_epochs or 1, 1)
        warmup = int(self.warmup_epochs * total / epochs)
        scheduler = warmup_then(optimizer, self.lr_schedule, total, warmup)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
