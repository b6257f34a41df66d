"""GroupedAccuracy: overall / head / tail top-1 from per-class counts."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.metrics import GroupedAccuracy


def _logits(predictions: list[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float()


def test_overall_head_tail_closed_form():
    metric = GroupedAccuracy([True, False, False])
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    metric.update(_logits([0, 0, 1, 0, 0, 0], 3), target)  # head 2/2, tail 1/4
    result = metric.compute()
    assert result.overall.item() == pytest.approx(50.0)
    assert result.head.item() == pytest.approx(100.0)
    assert result.tail.item() == pytest.approx(25.0)
    assert result.per_class.tolist() == pytest.approx([100.0, 50.0, 0.0])


def test_accumulates_over_batches():
    metric = GroupedAccuracy([True, False])
    metric.update(_logits([0], 2), torch.tensor([0]))
    metric.update(_logits([0], 2), torch.tensor([1]))
    assert metric.compute().overall.item() == pytest.approx(50.0)
