"""The embedded judge's network: a small CNN over 16 px images with one output per planted
(class, sub-mode) unit; class scores are the log-sum-exp of a class's units."""

from __future__ import annotations

import torch
from torch import Tensor, nn

FEATURE_DIM = 64


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class JudgeNet(nn.Module):
    """Images ``(B, 3, S, S)`` in [0, 1] -> (features ``(B, 64)``, unit logits ``(B, U)``).

    Args:
        num_units: Number of (class, sub-mode) units.
        width: Channels of the first block (doubled twice).
    """

    def __init__(self, num_units: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_block(3, w), *_block(w, w), nn.MaxPool2d(2),
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * w, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_units)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body((images - 0.5) / 0.25)
        return features, self.head(features)


def class_logits(unit_logits: Tensor, class_of: Tensor, num_classes: int) -> Tensor:
    """``(B, U)`` unit logits -> ``(B, K)`` class logits: log-sum-exp over each class's units."""
    out = unit_logits.new_full((unit_logits.shape[0], num_classes), float("-inf"))
    for c in range(num_classes):
        out[:, c] = torch.logsumexp(unit_logits[:, class_of == c], dim=1)
    return out
