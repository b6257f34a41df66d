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


def _log_prior(class_counts: Sequence[int]) -> torch.Tensor:
    counts = torch.tensor(list(class_counts), dtype=torch.float32)
    if counts.numel() == 0 or (counts <= 0).any():
        raise ValueError(f"class_counts={list(class_counts)}: expected a positive count per class")
    return torch.log(counts / counts.sum())


class FocalLoss(nn.Module):
    """Focal loss (Lin et al.): ``-(1 - p_t)^gamma log p_t``; soft targets weight every class.

    Args:
        class_counts: Unused (same constructor as every loss).
        gamma: Focusing parameter (0 = cross-entropy).
    """

    def __init__(self, class_counts: Sequence[int] = (), gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1)
        if target.ndim == 1:
            target = F.one_hot(target, logits.shape[-1]).to(log_p.dtype)
        focal = (1 - log_p.exp()).pow(self.gamma)
        return -(target * focal * log_p).sum(dim=-1).mean()


class BalancedSoftmax(nn.Module):
    """Balanced Softmax (Ren et al.): cross-entropy on ``logits + log(prior)``."""

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("log_prior", _log_prior(class_counts))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits + self.log_prior, target)


class LogitAdjustedLoss(nn.Module):
    """Logit-adjusted loss (Menon et al.): cross-entropy on ``logits + tau * log(prior)``.

    For post-hoc logit adjustment instead, train with cross-entropy and set the classifier's
    ``posthoc_logit_adjustment``.
    """

    def __init__(self, class_counts: Sequence[int], tau: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("adjustment", tau * _log_prior(class_counts))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits + self.adjustment, target)


class ClassBalancedLoss(nn.Module):
    """Class-balanced cross-entropy (Cui et al.): weights ``(1 - beta) / (1 - beta^n_c)``,
    normalised to sum to the number of classes."""

    def __init__(self, class_counts: Sequence[int], beta: float = 0.999) -> None:
        super().__init__()
        if not 0 <= beta < 1:
            raise ValueError(f"ClassBalancedLoss.beta={beta}: expected 0 <= beta < 1")
        counts = torch.tensor(list(class_counts), dtype=torch.float32)
        weights = (1 - beta) / (1 - beta**counts)
        self.register_buffer("weights", weights * len(counts) / weights.sum())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            target = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        per_sample = -(target * self.weights * F.log_softmax(logits, dim=-1)).sum(dim=-1)
        return per_sample.mean()


class LDAMLoss(nn.Module):
    """LDAM (Cao et al.): subtract a margin ``m_c ∝ n_c^(-1/4)`` (largest = ``max_margin``) from
    the true-class logit, scale by ``s``. Soft targets subtract the target-weighted margins.

    The margins and ``s = 30`` are sized for cosine logits in [-1, 1]: train it with the
    classifier's ``cosine_head: true``, as LDAM-DRW does (on raw logits ``s`` would only sharpen
    the softmax 30-fold).
    """

    def __init__(self, class_counts: Sequence[int], max_margin: float = 0.5, s: float = 30.0) -> None:
        super().__init__()
        counts = torch.tensor(list(class_counts), dtype=torch.float32)
        margins = counts.pow(-0.25)
        self.register_buffer("margins", margins * (max_margin / margins.max()))
        self.s = s

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            target = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        adjusted = logits - target * self.margins
        return soft_cross_entropy(self.s * adjusted, target)
