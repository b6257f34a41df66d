"""The embedded, generated long-tailed food dataset that ships with the package."""

from datamodules.embedded.build import (
    EmbeddedSettings,
    ensure_embedded_dataset,
    read_confusable_pairs,
    read_planted_submodes,
)

__all__ = [
    "EmbeddedSettings",
    "ensure_embedded_dataset",
    "read_confusable_pairs",
    "read_planted_submodes",
]
