"""ClusDiff's sub-class draws: each generated image's prompt names a sub-class of its class, drawn
in proportion to the sub-class sizes the clustering stage found (option: uniform over
sub-classes). :class:`~datamodules.generation.GenerationRequests` uses them when it is given a
``subclasses_csv``; the rest (counts per class, seeds, output paths, resumability) is its one
generation path.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from datamodules.diffusion_data import Subclass, check_subclass_prompt, image_key, subclasses_of
from datamodules.layout import Sample

CLUSDIFF_PROMPT = "A photo of {class_name}, style {subclass}, a type of food."
SubclassSampling = Literal["proportional", "uniform"]


def subclass_sizes(path: str | Path, samples: Sequence[Sample]) -> dict[str, Counter]:
    """``class_name -> Counter(subclass -> number of training images)`` from ``subclasses.csv``
    (read and validated by the fine-tune's own reader, so both see the same sub-classes)."""
    sizes: dict[str, Counter] = defaultdict(Counter)
    for sample, subclass in zip(samples, subclasses_of(samples, path)):
        sizes[image_key(sample.path).split("/", 1)[0]][subclass] += 1
    return sizes


def draw_subclasses(
    sizes: Counter, label: int, count: int, sampling: SubclassSampling, seed: int
) -> list[Subclass]:
    """``count`` sub-classes of class ``label``: weighted by ``sizes`` (``proportional``, the
    paper) or uniform; the same draws for the same ``seed`` and ``label``."""
    ids = sorted(sizes)
    weights = [sizes[k] if sampling == "proportional" else 1 for k in ids]
    rng = random.Random(seed * 1_000_003 + label)
    return list(rng.choices(ids, weights=weights, k=count))


def check_subclass_options(
    subclasses_csv: str | None, sampling: str, prompt_template: str
) -> None:
    """The fine-tune's prompt check (:func:`check_subclass_prompt`), and a known ``sampling``."""
    check_subclass_prompt(subclasses_csv, prompt_template)
    if sampling not in ("proportional", "uniform"):
        raise ValueError(f"subclass_sampling={sampling!r}: expected 'proportional' or 'uniform'")
