"""What a model needs to know about its dataset, declared once by the datamodule."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DatasetInfo:
    """Class names, per-class training counts and the head mask of a long-tailed dataset.

    LightningCLI links the datamodule's ``dataset_info`` to the model's ``dataset_info``
    (``link_arguments(..., apply_on="instantiate")``), so it is declared in one place.
    """

    class_names: list[str]
    class_counts: list[int]
    head_mask: list[bool]
    split_source: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if len(self.class_counts) != n or len(self.head_mask) != n:
            raise ValueError(
                f"DatasetInfo: {n} class names, {len(self.class_counts)} counts and "
                f"{len(self.head_mask)} head flags; expected one of each per class"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_head(self) -> int:
        return sum(self.head_mask)
