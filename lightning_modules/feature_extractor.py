"""ResNet-18 penultimate features of a dataset, as a predict-only LightningModule.

Used by the ClusDiff clustering stage and the DiSC-DS confusing-class selection. The weights come
from a classifier checkpoint this project trained (``.ckpt``; the stem variant is read from its
hyper-parameters) or a local ResNet-18 state dict (``.safetensors`` / ``.pth``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from datamodules.info import DatasetInfo
from lightning_modules.backbone import build_resnet18, penultimate_features


def checkpoint_uses_small_stem(path: str | Path) -> bool | None:
    """The ``small_input_stem`` a classifier checkpoint was trained with (``None``: not a ckpt)."""
    if Path(path).suffix != ".ckpt":
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return bool(checkpoint.get("hyper_parameters", {}).get("small_input_stem", False))


class ResNetFeatureExtractor(L.LightningModule):
    """Predict step returns ``{"features": (B, 512), "labels": (B,)}``.

    Args:
        weights_path: Classifier checkpoint or ResNet-18 weights file (local; required).
        small_input_stem: Stem variant for a plain weights file (a checkpoint says its own).
        dataset_info: Linked from the datamodule (unused; accepted like every project module).
    """

    def __init__(
        self,
        weights_path: str,
        small_input_stem: bool = False,
        dataset_info: DatasetInfo | None = None,
    ) -> None:
        super().__init__()
        stem = checkpoint_uses_small_stem(weights_path)
        self.model = build_resnet18(1000, weights_path, small_input_stem if stem is None else stem)
        self.model.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return penultimate_features(self.model, images)

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        return {"features": self(images).float(), "labels": labels}
