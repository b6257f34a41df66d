"""What a model needs to know about its dataset, declared once by the datamodule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class DatasetInfo:
    """Class names, per-class training counts and the head mask of a long-tailed dataset.

    LightningCLI links the datamodule's ``dataset_info`` to the model's ``dataset_info``
    (``link_arguments(..., apply_on="instantiate")``), so it is declared in one place.

    Attributes:
        class_counts: Real training images per class; they define head and tail.
        training_counts: Images per class training sees when it differs from the real counts
            (real + synthetic), or None. Class priors (long-tail losses, post-hoc logit
            adjustment) use it: :attr:`prior_counts`.
    """

    class_names: list[str]
    class_counts: list[int]
    head_mask: list[bool]
    split_source: str = ""
    extras: dict = field(default_factory=dict)
    training_counts: list[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if len(self.class_counts) != n or len(self.head_mask) != n:
            raise ValueError(
                f"DatasetInfo: {n} class names, {len(self.class_counts)} counts and "
                f"{len(self.head_mask)} head flags; expected one of each per class"
            )
        if self.training_counts is not None and len(self.training_counts) != n:
            raise ValueError(
                f"DatasetInfo: {n} class names but {len(self.training_counts)} training counts"
            )

    @property
    def prior_counts(self) -> list[int]:
        """Per-class counts of the training distribution: what class priors are made of."""
        return self.class_counts if self.training_counts is None else self.training_counts

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_head(self) -> int:
        return sum(self.head_mask)


@runtime_checkable
class PlantedTruth(Protocol):
    """A dataset that knows what was planted in it (the embedded dataset): each image's sub-mode
    and the class pairs built to be confusable. Real datasets have neither, and the figures that
    need them are left out, never faked."""

    def planted_submodes(self) -> dict[str, str]:
        """``"class/id"`` -> planted sub-mode name, for every image."""

    def confusable_pairs(self) -> list[tuple[str, str]]:
        """The planted confusable class pairs."""
