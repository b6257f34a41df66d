"""Class-aware resampling of a long-tailed training set (the classic ROS / RUS baselines).

- ``oversample`` (ROS): every class drawn up to the largest class's count (with replacement).
- ``undersample`` (RUS): every class cut down to the smallest class's count.
- ``class_balanced``: the epoch keeps its length, classes drawn uniformly (used by SYNAuG's
  last-layer re-training).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Literal

from torch.utils.data import Sampler

ResampleMode = Literal["none", "oversample", "undersample", "class_balanced"]


class ClassResampler(Sampler[int]):
    """Indices of one epoch, re-drawn every epoch from ``seed`` and the epoch number.

    Under DDP, Lightning wraps it in ``DistributedSamplerWrapper`` (each rank gets a share).
    """

    def __init__(self, labels: Sequence[int], mode: ResampleMode, seed: int = 0) -> None:
        if mode not in ("oversample", "undersample", "class_balanced"):
            raise ValueError(
                f"resample={mode!r}: expected 'oversample', 'undersample' or 'class_balanced'"
            )
        self.by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            self.by_class.setdefault(int(label), []).append(index)
        self.mode = mode
        self.seed = seed
        self.epoch = 0
        self.total = len(labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_class(self) -> int:
        sizes = [len(v) for v in self.by_class.values()]
        return max(sizes) if self.mode == "oversample" else min(sizes)

    def __len__(self) -> int:
        if self.mode == "class_balanced":
            return self.total
        return self._per_class() * len(self.by_class)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        classes = sorted(self.by_class)
        if self.mode == "class_balanced":
            picks = [rng.choice(self.by_class[rng.choice(classes)]) for _ in range(self.total)]
        else:
            n = self._per_class()
            picks = []
            for c in classes:
                pool = self.by_class[c]
                if n <= len(pool):
                    picks += rng.sample(pool, n)
                else:
                    picks += pool + [rng.choice(pool) for _ in range(n - len(pool))]
            rng.shuffle(picks)
        return iter(picks)
