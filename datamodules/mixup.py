"""Mixup between real and synthetic images: batch plans (who is paired with whom) and the collate
function that mixes them. Nothing here lives in a Dataset: the planner decides the pairing, the
collate function mixes.

Notation: a batch plan lists the dataset ``indices`` of its output rows, ``extra`` indices loaded
only to serve as partners, and for each output row the position of its partner in
``indices + extra`` (``-1``: not mixed). One ``lam ~ Beta(a, a)`` per batch (drawn from the plan's
own seed, so a batch is reproducible wherever it is collated); a mixed row is
``lam * x_row + (1 - lam) * x_partner`` with the soft label mixed the same way.

Modes (docs/algorithms.md, Mixup):
- ``mixup_random`` (SYNAuG): every batch of the shuffled real + synthetic union is mixed with a
  random permutation of itself, so synthetic and real samples are randomly paired within a batch.
- ``mixup_all``: half of the batches of each epoch (chosen at random; with an odd number of
  batches, the odd one out is a Mixup batch with probability 1/2) are Mixup batches; in those,
  every synthetic row is paired with a real sample of the same batch, and when the batch has too
  few real samples, real ones are oversampled from the whole real set (``extra``). Every sample,
  synthetic ones included, is an output row exactly once per epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from datamodules.epoch_seeds import derive_seed, seeded_call

MixupMode = Literal["mixup_random", "mixup_all"]


@dataclass(frozen=True)
class BatchPlan:
    """One batch: output rows, partner-only extras, partner positions and the batch's seed."""

    indices: tuple[int, ...]
    partners: tuple[int, ...]
    extra: tuple[int, ...] = ()
    seed: int = 0

    @property
    def mixed(self) -> bool:
        return any(p >= 0 for p in self.partners)


def plan_epoch(
    mode: MixupMode,
    is_synthetic: Sequence[bool],
    batch_size: int,
    rng: random.Random,
    drop_last: bool = False,
) -> list[BatchPlan]:
    """The batches of one epoch over a union dataset whose item ``i`` is synthetic iff
    ``is_synthetic[i]``."""
    order = list(range(len(is_synthetic)))
    rng.shuffle(order)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and chunks and len(chunks[-1]) < batch_size:
        chunks.pop()
    real_pool = [i for i, s in enumerate(is_synthetic) if not s]
    if mode == "mixup_random":
        plans = [_random_pairs(chunk, rng) for chunk in chunks]
    elif mode == "mixup_all":
        # Half of the batches; an odd count's middle batch is mixed with probability 1/2, so
        # an epoch of 1 or 3 batches is not left (almost) unmixed.
        k = len(chunks) // 2 + (len(chunks) % 2 == 1 and rng.random() < 0.5)
        chosen = set(rng.sample(range(len(chunks)), k))
        plans = [
            _synthetic_with_real(chunk, is_synthetic, real_pool, rng) if b in chosen
            else BatchPlan(tuple(chunk), (-1,) * len(chunk))
            for b, chunk in enumerate(chunks)
        ]
    else:
        raise ValueError(f"mixup mode {mode!r}: expected 'mixup_random' or 'mixup_all'")
    return [BatchPlan(p.indices, p.partners, p.extra, rng.getrandbits(63)) for p in plans]


def _random_pairs(chunk: list[int], rng: random.Random) -> BatchPlan:
    perm = list(range(len(chunk)))
    rng.shuffle(perm)
    return BatchPlan(tuple(chunk), tuple(perm))


def _synthetic_with_real(
    chunk: list[int], is_synthetic: Sequence[bool], real_pool: list[int], rng: random.Random
) -> BatchPlan:
    if not real_pool:
        raise ValueError("mixup_all needs real samples to pair with the synthetic ones")
    synth_pos = [p for p, i in enumerate(chunk) if is_synthetic[i]]
    real_pos = [p for p, i in enumerate(chunk) if not is_synthetic[i]]
    rng.shuffle(real_pos)
    shortfall = max(len(synth_pos) - len(real_pos), 0)
    extra = tuple(rng.choice(real_pool) for _ in range(shortfall))  # oversampled real partners
    partner_slots = real_pos[: len(synth_pos)] + [len(chunk) + k for k in range(shortfall)]
    partners = [-1] * len(chunk)
    for pos, slot in zip(synth_pos, partner_slots):
        partners[pos] = slot
    return BatchPlan(tuple(chunk), tuple(partners), extra)


class MixupPlanner(Sampler[BatchPlan]):
    """Yields the :class:`BatchPlan` s of each epoch (a new shuffle every epoch, from ``seed``).

    Under DDP, Lightning wraps this sampler in its ``DistributedSamplerWrapper``, which hands each
    rank a disjoint share of the plans (padding with repeated plans when the count does not divide).
    """

    def __init__(
        self, mode: MixupMode, is_synthetic: Sequence[bool], batch_size: int, seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.mode = mode
        self.is_synthetic = list(is_synthetic)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[BatchPlan]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1  # a wrapper that never calls set_epoch still gets a new shuffle
        yield from plan_epoch(self.mode, self.is_synthetic, self.batch_size, rng, self.drop_last)

    def __len__(self) -> int:
        n = len(self.is_synthetic)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class PlannedBatches(Dataset):
    """Fetches every sample a plan names; the DataLoader uses it with ``batch_size=None``.

    The sample at position k of a plan is transformed under ``derive_seed(plan.seed, k)``, so its
    augmentation depends on the plan alone (see :mod:`datamodules.epoch_seeds`).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, plan: BatchPlan):
        items = plan.indices + plan.extra
        fetch = self.dataset.__getitem__
        return [seeded_call(derive_seed(plan.seed, k), fetch, i) for k, i in enumerate(items)], plan


def mix_rows(
    images: torch.Tensor, labels: torch.Tensor, partners: torch.Tensor, lam: float,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Mixup of a planned batch: ``(images, soft targets)`` of its output rows.

    ``images`` (n, ...) and ``labels`` (n,) hold the rows then the partner-only extras;
    ``partners`` (rows,) gives each row's partner position (-1: not mixed). A mixed row is
    ``lam * x_row + (1 - lam) * x_partner``, its target mixed the same way. The one formula of
    both input paths (in the worker, or on the device for the decoded cache).
    """
    targets = torch.nn.functional.one_hot(labels, num_classes).to(images.dtype)
    rows = len(partners)
    mixed = partners >= 0
    out_x, out_y = images[:rows].clone(), targets[:rows].clone()
    if mixed.any():
        src = partners[mixed]
        out_x[mixed] = lam * images[:rows][mixed] + (1 - lam) * images[src]
        out_y[mixed] = lam * targets[:rows][mixed] + (1 - lam) * targets[src]
    return out_x, out_y


def plan_lam(plan: BatchPlan, alpha: float) -> float:
    """The batch's mixing weight lam ~ Beta(alpha, alpha), drawn from the plan's own seed."""
    return float(np.random.default_rng(plan.seed).beta(alpha, alpha))


class MixupCollate:
    """Stacks a planned batch and mixes it: returns ``(images, soft_targets)``.

    Args:
        num_classes: Width of the soft targets.
        alpha: Beta(alpha, alpha) parameter of the per-batch mixing weight.
    """

    def __init__(self, num_classes: int, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"mixup alpha={alpha}: expected > 0")
        self.num_classes = num_classes
        self.alpha = alpha

    def lam(self, plan: BatchPlan) -> float:
        return plan_lam(plan, self.alpha)

    def __call__(self, fetched) -> tuple[torch.Tensor, torch.Tensor]:
        samples, plan = fetched
        images = torch.stack([s[0] for s in samples])
        labels = torch.tensor([s[1] for s in samples])
        partners = torch.tensor(plan.partners)
        return mix_rows(images, labels, partners, self.lam(plan), self.num_classes)
