"""The balanced image set the embedded dataset's judge (an oracle of class and sub-mode) learns.

Drawn by the dataset's own renderer with the dataset's JPEG encoding, ``per_submode`` images of
every (class, sub-mode) pair in each style the dataset has (the photo style of the train and test
splits and the web style of the pre-training corpus, so that style never counts as a class
error), from generators seeded ``[seed, 1000 + style, class, sub-mode, k]``: disjoint from the
dataset's images (seeded ``[seed, split (0-2), class, k]``), so that the judge never saw an image
it later judges.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from datamodules.embedded.build import EmbeddedSettings, encode_jpeg
from datamodules.embedded.render import render_dish
from datamodules.embedded.spec import DISHES

JUDGE_SEED_OFFSET = 1000


@dataclass(frozen=True)
class SubmodeCatalog:
    """Every planted (class, sub-mode) pair, in spec order: the judge's output units.

    Attributes:
        pairs: ``(class_name, submode_name)`` per unit.
        class_of: Class index of each unit.
        weights: Planted weight of each unit within its class (normalised per class).
    """

    pairs: tuple[tuple[str, str], ...]
    class_of: tuple[int, ...]
    weights: tuple[float, ...]

    @classmethod
    def of_spec(cls) -> SubmodeCatalog:
        pairs, class_of, weights = [], [], []
        for c, dish in enumerate(DISHES):
            total = sum(m.weight for m in dish.submodes)
            for mode in dish.submodes:
                pairs.append((dish.name, mode.name))
                class_of.append(c)
                weights.append(mode.weight / total)
        return cls(tuple(pairs), tuple(class_of), tuple(weights))

    def units_of(self, class_index: int) -> list[int]:
        return [u for u, c in enumerate(self.class_of) if c == class_index]

    def index(self, class_name: str, submode: str) -> int:
        return self.pairs.index((class_name, submode))


def judge_styles(settings: EmbeddedSettings) -> tuple[float, ...]:
    """The web-style strengths the dataset's images have: photo, and the corpus's if any."""
    return (0.0, settings.web_style) if settings.web_style > 0 else (0.0,)


def render_judge_set(
    settings: EmbeddedSettings, per_submode: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, S, S, 3) uint8, sub-mode unit (N,))``: ``per_submode`` of every unit in
    every style of :func:`judge_styles`.

    Every image goes through the dataset's JPEG encoding, as the real images do.
    """
    images, units = [], []
    for s, web in enumerate(judge_styles(settings)):
        unit = 0
        for c, dish in enumerate(DISHES):
            for m, mode in enumerate(dish.submodes):
                for k in range(per_submode):
                    rng = np.random.default_rng([settings.seed, JUDGE_SEED_OFFSET + s, c, m, k])
                    pixels = render_dish(dish, mode, rng, settings.image_size, web)
                    with Image.open(io.BytesIO(encode_jpeg(pixels))) as decoded:
                        images.append(np.asarray(decoded.convert("RGB")))
                    units.append(unit)
                unit += 1
    return np.stack(images), np.asarray(units, dtype=np.int64)
