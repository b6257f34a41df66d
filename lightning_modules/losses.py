"""Classification losses. Every loss is built from the per-class training counts, so that each
long-tail loss is a config away from cross-entropy (``loss: {class_path: ..., init_args: ...}``).

All losses take logits ``(B, C)`` and targets that are either class indices ``(B,)`` or soft
labels ``(B, C)`` (Mixup).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LossFactory = Callable[[Sequence[int]], nn.Module]
"""What the classifier takes: ``class_counts -> loss module``."""


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against hard (``(B,)``) or soft (``(B, C)``) targets, mean over the batch."""
    if target.ndim == 1:
        return F.cross_entropy(logits, target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


class CrossEntropy(nn.Module):
    """Plain cross-entropy (the CE baseline).

    Args:
        class_counts: Unused; accepted so every loss has the same constructor.
        label_smoothing: Standard label smoothing.
    """

    def __init__(self, class_counts: Sequence[int] = (), label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        num_classes = logits.shape[-1]
        smoothed = target * (1 - self.label_smoothing) + self.label_smoothing / num_classes
        return soft_cross_entropy(logits, smoothed)
