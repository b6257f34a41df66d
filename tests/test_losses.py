"""Long-tail losses: closed forms and the hard/soft target paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.losses import (
    BalancedSoftmax,
    ClassBalancedLoss,
    CrossEntropy,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
)

COUNTS = [100, 10, 1]
LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
TARGET = torch.tensor([0, 2])


def test_soft_one_hot_equals_hard_targets_for_every_loss():
    soft = F.one_hot(TARGET, 3).float()
    for loss in (CrossEntropy(COUNTS), FocalLoss(COUNTS), BalancedSoftmax(COUNTS),
                 LogitAdjustedLoss(COUNTS), ClassBalancedLoss(COUNTS), LDAMLoss(COUNTS)):
        assert loss(LOGITS, TARGET).item() == pytest.approx(loss(LOGITS, soft).item(), rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy():
    assert FocalLoss(gamma=0.0)(LOGITS, TARGET).item() == pytest.approx(
        F.cross_entropy(LOGITS, TARGET).item(), rel=1e-6)


def test_balanced_softmax_shifts_logits_by_log_prior():
    prior = torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS)
    expected = F.cross_entropy(LOGITS + prior.log(), TARGET)
    assert BalancedSoftmax(COUNTS)(LOGITS, TARGET).item() == pytest.approx(expected.item(), rel=1e-6)
    assert LogitAdjustedLoss(COUNTS, tau=1.0)(LOGITS, TARGET).item() == pytest.approx(
        expected.item(), rel=1e-6)


def test_class_balanced_weights_favour_rare_classes():
    weights = ClassBalancedLoss(COUNTS, beta=0.99).weights
    assert weights[2] > weights[1] > weights[0]
    assert weights.sum().item() == pytest.approx(3.0)


def test_ldam_margins_largest_for_rarest_class():
    margins = LDAMLoss(COUNTS, max_margin=0.5).margins
    assert margins[2].item() == pytest.approx(0.5)
    assert margins[0] < margins[1] < margins[2]


def test_invalid_counts_are_rejected():
    with pytest.raises(ValueError, match="positive count"):
        BalancedSoftmax([3, 0])
