"""Batches of uint8 images that become model input on the device (the decoded-cache path).

Workers ship ``(n, 3, S, S)`` uint8 images (a quarter of float32's bytes through shared memory)
with the batch's Mixup plan; after the transfer to the device the datamodule's
``on_after_batch_transfer`` converts them (:func:`to_model_input`) and mixes them
(:func:`~datamodules.mixup.mix_rows`): the same functions as the file path's worker-side ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.utils.data import default_collate

from datamodules.mixup import BatchPlan, mix_rows, plan_lam
from datamodules.transforms import to_model_input


@dataclass
class Uint8Batch:
    """A batch as the workers ship it (not frozen: Lightning moves dataclasses field by field).

    Attributes:
        images: ``(n, 3, S, S)`` uint8: the output rows, then partner-only extras.
        labels: ``(n,)`` int64.
        partners: ``(rows,)`` partner positions (-1: not mixed), or None for a plain batch.
        lam: The batch's Mixup weight (unused for a plain batch).
    """

    images: Tensor
    labels: Tensor
    partners: Tensor | None = None
    lam: float = 1.0


def collate_uint8(items: list[tuple[Tensor, int]]) -> Uint8Batch:
    """Plain batches: stack the uint8 images (channels-last, as the crop leaves them) and labels."""
    # default_collate stacks a worker's batch straight into shared memory (no copy to send it)
    images = default_collate([x.permute(1, 2, 0) for x, _ in items]).permute(0, 3, 1, 2)
    return Uint8Batch(images, torch.tensor([y for _, y in items]))


class PlannedUint8Collate:
    """Planned (Mixup) batches: stack and carry the plan; nothing is mixed in the worker.

    Args:
        alpha: Beta(alpha, alpha) parameter of the per-batch mixing weight.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"mixup alpha={alpha}: expected > 0")
        self.alpha = alpha

    def __call__(self, fetched: tuple[list, BatchPlan]) -> Uint8Batch:
        samples, plan = fetched
        return replace(collate_uint8(samples), partners=torch.tensor(plan.partners),
                       lam=plan_lam(plan, self.alpha))


def to_training_batch(batch: Uint8Batch, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(model input, targets)``: labels for a plain batch, soft targets for a planned one."""
    images = to_model_input(batch.images)
    if batch.partners is None:
        return images, batch.labels
    return mix_rows(images, batch.labels, batch.partners, batch.lam, num_classes)
