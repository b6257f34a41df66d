"""Pairing rules of Mixup-random and Mixup-all, and the collate function's arithmetic."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from datamodules.mixup import BatchPlan, MixupCollate, MixupPlanner, plan_epoch

# 10 real then 30 synthetic: far more synthetic than real, so mixup_all must oversample real.
IS_SYNTH = [False] * 10 + [True] * 30


def test_mixup_all_mixes_half_of_the_batches():
    even = plan_epoch("mixup_all", IS_SYNTH, 10, random.Random(0))  # 4 batches
    assert sum(p.mixed for p in even) == 2
    single = [plan_epoch("mixup_all", IS_SYNTH, 64, random.Random(seed))[0].mixed
              for seed in range(200)]  # 1 batch per epoch: mixed in about half of the epochs
    assert 70 < sum(single) < 130


def test_mixup_all_pairs_every_synthetic_row_with_a_real_partner():
    plans = plan_epoch("mixup_all", IS_SYNTH, 8, random.Random(0))
    mixed = [p for p in plans if p.mixed]
    assert len(plans) == 5 and len(mixed) in (2, 3)  # half; the odd one out by a coin flip
    for plan in mixed:
        pool = plan.indices + plan.extra
        for row, partner in zip(plan.indices, plan.partners):
            if IS_SYNTH[row]:
                assert partner >= 0 and not IS_SYNTH[pool[partner]]
            else:
                assert partner == -1
        used = [p for p in plan.partners if p >= 0]
        assert len(used) == len(set(used))  # a real partner serves one synthetic row
    assert any(p.extra for p in mixed)  # real samples were oversampled when short


def test_every_sample_is_an_output_row_exactly_once_per_epoch():
    for mode in ("mixup_all", "mixup_random"):
        plans = plan_epoch(mode, IS_SYNTH, 8, random.Random(1))
        rows = Counter(i for p in plans for i in p.indices)
        assert rows == Counter(range(len(IS_SYNTH)))


def test_mixup_random_pairs_within_the_batch_only():
    for plan in plan_epoch("mixup_random", IS_SYNTH, 8, random.Random(2)):
        assert plan.extra == ()
        assert sorted(plan.partners) == list(range(len(plan.indices)))  # a permutation


def test_planner_reshuffles_each_epoch_and_is_seeded():
    a, b = MixupPlanner("mixup_all", IS_SYNTH, 8, seed=3), MixupPlanner("mixup_all", IS_SYNTH, 8, seed=3)
    first, second = list(a), list(a)
    assert first == list(b)
    assert first != second
    assert len(a) == 5


def test_collate_mixes_rows_with_consistent_labels_and_lambda():
    images = [torch.full((1, 2, 2), float(v)) for v in (0, 10, 20, 30)]
    samples = [(images[0], 0), (images[1], 1), (images[2], 2), (images[3], 2)]
    plan = BatchPlan(indices=(0, 1, 2), partners=(3, -1, 1), extra=(9,), seed=7)
    collate = MixupCollate(num_classes=3, alpha=1.0)
    x, y = collate((samples, plan))
    lam = collate.lam(plan)
    assert 0 < lam < 1
    assert torch.allclose(x[0], lam * images[0] + (1 - lam) * images[3])
    assert torch.equal(x[1], images[1])
    assert torch.allclose(x[2], lam * images[2] + (1 - lam) * images[1])
    assert torch.allclose(y[0], torch.tensor([lam, 0, 1 - lam]))
    assert torch.allclose(y[2], torch.tensor([0, 1 - lam, lam]))
    assert torch.allclose(y.sum(dim=1), torch.ones(3))
    # the pixel value encodes the label mix: x = 10 * (expected label index) for these images
    assert x.shape == (3, 1, 2, 2)


def test_mixup_all_without_real_samples_is_an_error():
    with pytest.raises(ValueError, match="needs real samples"):
        plan_epoch("mixup_all", [True] * 4, 2, random.Random(0))


def test_ranks_share_the_plans_of_an_epoch_without_loss_or_overlap():
    """Under DDP Lightning wraps the planner in DistributedSamplerWrapper: each rank gets a
    disjoint share of the epoch's plans (padding repeats plans when the count does not divide)."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    def plans_of(rank: int) -> list[BatchPlan]:
        wrapper = DistributedSamplerWrapper(
            MixupPlanner("mixup_all", IS_SYNTH, 8, seed=5), num_replicas=2, rank=rank,
            shuffle=False)
        wrapper.set_epoch(0)
        return list(wrapper)

    rank0, rank1 = plans_of(0), plans_of(1)
    everything = list(MixupPlanner("mixup_all", IS_SYNTH, 8, seed=5))
    assert len(rank0) == len(rank1) == 3  # 5 plans over 2 ranks: one repeated as padding
    assert set(rank0) | set(rank1) == set(everything)
    assert len(set(rank0) & set(rank1)) <= 1
