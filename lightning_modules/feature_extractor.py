"""ResNet-18 penultimate features of a dataset, as a predict-only LightningModule.

Used by the ClusDiff clustering stage and the DiSC-DS confusing-class selection. The weights come
from a classifier checkpoint this project trained (``.ckpt``) or a local ResNet-18 state dict
(``.safetensors`` / ``.pth``); the network's shape is read from the weights.
"""

from __future__ import annotations

import lightning as L
import torch

from datamodules.info import DatasetInfo
from lightning_modules.backbone import penultimate_features, read_state_dict, resnet18_for_state


class ResNetFeatureExtractor(L.LightningModule):
    """Predict step returns ``{"features": (B, D), "labels": (B,)}`` (D = 512 at full width).

    Args:
        weights_path: Classifier checkpoint or ResNet-18 weights file (local; required). The
            network's shape (classes, stem, width) is read from the weights.
        dataset_info: Linked from the datamodule (unused; accepted like every project module).
    """

    def __init__(self, weights_path: str, dataset_info: DatasetInfo | None = None) -> None:
        super().__init__()
        try:
            self.model = resnet18_for_state(read_state_dict(weights_path))
        except ValueError as err:
            raise ValueError(f"weights_path={weights_path!r}: {err}") from None
        self.model.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return penultimate_features(self.model, images)

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        return {"features": self(images).float(), "labels": labels}
