"""Top-1 accuracy overall, on head classes and on tail classes, DDP-correct (torchmetrics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchmetrics import Metric


@dataclass
class GroupedAccuracyResult:
    """Accuracies in percent, and the per-class counts they come from."""

    overall: torch.Tensor
    head: torch.Tensor
    tail: torch.Tensor
    per_class: torch.Tensor
    correct: torch.Tensor
    total: torch.Tensor


def _compute_grouped(correct: torch.Tensor, total: torch.Tensor, head: torch.Tensor) -> GroupedAccuracyResult:
    """Micro top-1 over all samples, over head-class samples and over tail-class samples."""

    def pct(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 100.0 * c.sum() / t.sum().clamp(min=1)

    per_class = 100.0 * correct / total.clamp(min=1)
    return GroupedAccuracyResult(
        overall=pct(correct, total),
        head=pct(correct[head], total[head]),
        tail=pct(correct[~head], total[~head]),
        per_class=per_class,
        correct=correct,
        total=total,
    )


class GroupedAccuracy(Metric):
    """Per-class correct/total counts (sum-reduced across processes), grouped into head and tail.

    Args:
        head_mask: One flag per class, ``True`` for head classes.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, head_mask: Sequence[bool], **kwargs) -> None:
        super().__init__(**kwargs)
        num_classes = len(head_mask)
        self.register_buffer("head_mask", torch.tensor(list(head_mask), dtype=torch.bool))
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        hit = (logits.argmax(dim=-1) == target).to(torch.float64)
        self.correct.index_add_(0, target, hit)
        self.total.index_add_(0, target, torch.ones_like(hit))

    def compute(self) -> GroupedAccuracyResult:
        return _compute_grouped(self.correct, self.total, self.head_mask.to(self.correct.device))
