"""Training randomness that depends on the run's seed and the epoch number only.

A fit killed after epoch k and resumed from its checkpoint must end with the weights of a fit that
was never interrupted. Global random states (Python, NumPy, torch, each DataLoader worker's) are
not saved in checkpoints and advance differently in a resumed process, so nothing random in a
training epoch reads them:

- the order of an epoch (:class:`EpochShuffle`, the resamplers, the Mixup planner) is drawn from
  ``derive_seed(seed, epoch)``;
- every item of an epoch carries its own seed (:class:`SeededSampler` yields ``(index, seed)``
  keys), and :class:`SeededDataset` applies the random transforms (crop, flip) under that seed, so
  an image's augmentation is the same whatever the worker, the number of workers or the process;
- model-side randomness (the diffusion fine-tune's noise and timesteps) draws from the global
  torch generator, which :class:`callbacks.epoch_seed.EpochSeed` re-seeds at every epoch start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

SeedKey = tuple[int, int]  # (dataset index, the item's seed)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (NumPy's SeedSequence: well mixed, order-sensitive)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def run_seed(seed: int | None) -> int:
    """``seed``, or the run's ``seed_everything`` value (``PL_GLOBAL_SEED``; 0 when unset)."""
    if seed is not None:
        return int(seed)
    return int(os.environ.get("PL_GLOBAL_SEED", "0"))


class EpochShuffle(Sampler[int]):
    """A fresh permutation of ``range(n)`` every epoch, from ``derive_seed(seed, epoch)``."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        self.epoch += 1  # a wrapper that never calls set_epoch still gets a new order
        return iter(torch.randperm(self.n, generator=generator).tolist())


class SeededSampler(Sampler[SeedKey]):
    """Wraps an index sampler: the k-th item of epoch e becomes ``(index, seed(e, k))``.

    ``set_epoch`` is passed on to the wrapped sampler, whose own order also follows the epoch.
    """

    def __init__(self, sampler: Sampler[int], seed: int = 0) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) if isinstance(self.sampler, Sized) else 0

    def __iter__(self) -> Iterator[SeedKey]:
        epoch_seed = derive_seed(self.seed, self.epoch, 1)
        self.epoch += 1
        for k, index in enumerate(self.sampler):
            yield int(index), derive_seed(epoch_seed, k)


class TrainerEpoch(Sampler):
    """Sets the wrapped sampler's epoch to the trainer's current epoch as each epoch's iteration
    starts (outside a Trainer, the sampler keeps its own count).

    ``set_epoch`` alone is not enough. With worker processes a DataLoader draws its first batches
    when its iterator is created, and Lightning creates the training iterator once before it
    restores a resumed fit's epoch (``estimated_stepping_batches`` in ``configure_optimizers``)
    and then keeps it: the first resumed epoch would replay epoch 0's order. When this sampler is
    iterated that early (a checkpoint to resume from, no step restored yet), it asks the trainer to
    rebuild the training loader at every epoch start (``reload_dataloaders_every_n_epochs = 1``):
    a resumed fit then pays a worker start per epoch and draws every epoch as an uninterrupted
    fit does.

    Args:
        sampler: A sampler with ``set_epoch``.
        datamodule: The datamodule whose ``trainer`` counts the epochs.
    """

    def __init__(self, sampler: Sampler, datamodule) -> None:
        self.sampler, self.datamodule = sampler, datamodule

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator:
        trainer = getattr(self.datamodule, "trainer", None)
        if trainer is not None:
            restoring = trainer.ckpt_path is not None and trainer.global_step == 0
            if restoring and not trainer.reload_dataloaders_every_n_epochs:
                trainer.reload_dataloaders_every_n_epochs = 1
            self.sampler.set_epoch(int(trainer.current_epoch))
        return iter(self.sampler)


def seed_global_generators(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices) from one seed."""
    import random

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def seeded_call(seed: int, fn, *args):
    """``fn(*args)`` with the global CPU torch generator seeded by ``seed``, restored afterwards.

    Only the CPU generator is seeded (CPU transforms draw from it): ``torch.manual_seed`` would
    also queue a CUDA seeding call, which records a stack trace each time on a machine without a
    GPU (about 2 ms per item).
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return fn(*args)


class SeededDataset(Dataset):
    """``dataset[index]`` under the item's own seed: ``__getitem__((index, seed))``.

    A plain integer index is served unseeded (validation, tests of the dataset itself).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SeedKey | int):
        if isinstance(key, tuple):
            index, seed = key
            return seeded_call(seed, self.dataset.__getitem__, index)
        return self.dataset[key]
