"""Long-tailed subsets and the head/tail split.

A long-tailed training set comes either from a split file (lines ``class/id``, as the LT
benchmarks ship them) or, when the user has none, from a generated exponential profile
``n_i = floor(n_max * IF ** (-i / (C - 1)))`` over the classes in their listed order (the
CIFAR-LT convention). A generated profile is a stand-in, never the official split: the
datamodule labels it so.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ExponentialProfile:
    """A generated exponential long-tail profile.

    Attributes:
        n_max: Images of the largest class (Food101-LT: 750).
        imbalance_factor: n_max / n_min (Food101-LT: 187.5, so the smallest class keeps 4).
        seed: Seed of the per-class random subsample.
    """

    n_max: int
    imbalance_factor: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_max < 1:
            raise ValueError(f"ExponentialProfile.n_max={self.n_max}: expected >= 1")
        if self.imbalance_factor < 1:
            raise ValueError(
                f"ExponentialProfile.imbalance_factor={self.imbalance_factor}: expected >= 1"
            )

    def describe(self) -> str:
        return (
            f"generated exponential profile (n_max={self.n_max}, "
            f"imbalance_factor={self.imbalance_factor}, seed={self.seed}); a stand-in, "
            "NOT an official long-tailed split"
        )


def exponential_counts(n_max: int, imbalance_factor: float, num_classes: int) -> list[int]:
    """Per-class counts of an exponential profile, largest first (at least 1 each)."""
    if num_classes == 1:
        return [n_max]
    return [
        max(1, math.floor(n_max * imbalance_factor ** (-i / (num_classes - 1)) + 1e-9))
        for i in range(num_classes)
    ]


def subsample_per_class(
    labels: Sequence[int], counts: Sequence[int], seed: int
) -> list[int]:
    """Indices of a seeded random subset holding ``counts[c]`` items of each class ``c``.

    Raises:
        ValueError: A class has fewer items than its count asks for.
    """
    by_class: dict[int, list[int]] = {c: [] for c in range(len(counts))}
    for index, label in enumerate(labels):
        by_class[label].append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for c, n in enumerate(counts):
        if len(by_class[c]) < n:
            raise ValueError(
                f"class {c} has {len(by_class[c])} images but the long-tail profile asks for {n}"
            )
        chosen.extend(sorted(rng.sample(by_class[c], n)))
    return sorted(chosen)


def hold_out_per_class(
    labels: Sequence[int], num_classes: int, per_class: int, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices into (held out: a seeded ``per_class`` of each class, the rest).

    Raises:
        ValueError: A class has no more than ``per_class`` items (nothing would be left).
    """
    sizes = [0] * num_classes
    for label in labels:
        sizes[label] += 1
    short = [c for c, n in enumerate(sizes) if n <= per_class]
    if short:
        raise ValueError(
            f"holding out {per_class} images per class leaves none of classes {short} "
            f"(they have {[sizes[c] for c in short]})"
        )
    held = subsample_per_class(labels, [per_class] * num_classes, seed)
    chosen = set(held)
    return held, [i for i in range(len(labels)) if i not in chosen]


def head_mask(
    counts: Sequence[int], num_head_classes: int | None = None, head_threshold: int | None = None
) -> list[bool]:
    """Which classes are "head": the ``num_head_classes`` with the most training images, or every
    class with at least ``head_threshold`` images. Give exactly one of the two.

    Ties in the count are broken by class index (lower index first), so the split is stable.
    """
    if (num_head_classes is None) == (head_threshold is None):
        raise ValueError(
            f"num_head_classes={num_head_classes}, head_threshold={head_threshold}: "
            "give exactly one of them"
        )
    if head_threshold is not None:
        return [n >= head_threshold for n in counts]
    if not 0 <= num_head_classes <= len(counts):
        raise ValueError(
            f"num_head_classes={num_head_classes}: expected between 0 and {len(counts)} classes"
        )
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    head = set(order[:num_head_classes])
    return [c in head for c in range(len(counts))]
