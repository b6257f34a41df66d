"""Epoch randomness from (seed, epoch) only: the order, and each item's augmentation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from datamodules.epoch_seeds import EpochShuffle, SeededDataset, SeededSampler, derive_seed


class Noise(Dataset):
    """Item i is a random draw from the global torch generator (stands in for a random crop)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> float:
        return float(torch.rand(()))


def _epoch(sampler: SeededSampler, epoch: int) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_keys_depend_on_seed_and_epoch_only():
    a, b = SeededSampler(EpochShuffle(6, seed=4), seed=4), SeededSampler(EpochShuffle(6, 4), 4)
    first = _epoch(a, 0)
    assert sorted(i for i, _ in first) == list(range(6))
    assert _epoch(a, 1) != first  # a new order and new item seeds each epoch
    assert _epoch(b, 1) == _epoch(a, 1)  # whatever was drawn before
    assert _epoch(SeededSampler(EpochShuffle(6, 5), 5), 1) != _epoch(a, 1)


def test_item_augmentation_follows_its_key_not_the_global_generator():
    data = SeededDataset(Noise())
    torch.manual_seed(0)
    x = data[(2, 77)]
    torch.manual_seed(1)
    assert data[(2, 77)] == x and data[(2, 78)] != x
    state = torch.get_rng_state()
    data[(3, 5)]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone


def test_derive_seed_mixes_its_parts():
    assert derive_seed(1, 2) == derive_seed(1, 2)
    assert len({derive_seed(1, 2), derive_seed(2, 1), derive_seed(1, 3), derive_seed(1)}) == 4
    assert 0 <= derive_seed(123456789, 10**12) < 2**63
