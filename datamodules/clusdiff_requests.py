"""ClusDiff generation requests: each image's prompt names a sub-class of its class, drawn in
proportion to the sub-class sizes the clustering stage found (option: uniform over sub-classes).

The rest (counts per class, seeds, output paths, resumability) is the one generation path of
:class:`~datamodules.generation.GenerationRequests`.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from datamodules.diffusion_data import image_key, subclasses_of
from datamodules.generation import GenerationRequests
from datamodules.layout import Sample

CLUSDIFF_PROMPT = "A photo of {class_name}, style {subclass}, a type of food."


def subclass_sizes(path: str | Path, samples: Sequence[Sample]) -> dict[str, Counter]:
    """``class_name -> Counter(subclass -> number of training images)`` from ``subclasses.csv``
    (read and validated by the fine-tune's own reader, so both see the same sub-classes)."""
    sizes: dict[str, Counter] = defaultdict(Counter)
    for sample, subclass in zip(samples, subclasses_of(samples, path)):
        sizes[image_key(sample.path).split("/", 1)[0]][subclass] += 1
    return sizes


class SubclassGenerationRequests(GenerationRequests):
    """Requests whose prompts carry a sub-class id (ClusDiff section 3.3).

    Args:
        subclasses_csv: ``subclasses.csv`` of the clustering stage.
        subclass_sampling: ``"proportional"`` (the paper: sub-class sizes within the class) or
            ``"uniform"``.
        prompt_template: Must contain ``{class_name}`` and ``{subclass}``; the fine-tune's template.
        subclass_seed: Seed of the sub-class draws.
        **kwargs: See :class:`GenerationRequests` (ClusDiff samples from noise: ``from_real: false``).
    """

    def __init__(
        self,
        subclasses_csv: str,
        subclass_sampling: Literal["proportional", "uniform"] = "proportional",
        prompt_template: str = CLUSDIFF_PROMPT,
        subclass_seed: int = 0,
        **kwargs,
    ) -> None:
        if "{subclass}" not in prompt_template:
            raise ValueError(
                f"prompt_template={prompt_template!r}: ClusDiff prompts need '{{subclass}}'"
            )
        if subclass_sampling not in ("proportional", "uniform"):
            raise ValueError(
                f"subclass_sampling={subclass_sampling!r}: expected 'proportional' or 'uniform'"
            )
        super().__init__(prompt_template=prompt_template, **kwargs)
        self.subclasses_csv = subclasses_csv
        self.subclass_sampling = subclass_sampling
        self.subclass_seed = subclass_seed
        self._sizes: dict[str, Counter] | None = None

    def class_subclasses(self, label: int, class_name: str, count: int) -> list[int | None]:
        if self._sizes is None:
            self._sizes = subclass_sizes(self.subclasses_csv, self.real.index.train)
        sizes = self._sizes.get(class_name)
        if not sizes:
            raise ValueError(f"{self.subclasses_csv}: no sub-class of class {class_name!r}")
        ids = sorted(sizes)
        weights = [sizes[k] if self.subclass_sampling == "proportional" else 1 for k in ids]
        rng = random.Random(self.subclass_seed * 1_000_003 + label)
        return list(rng.choices(ids, weights=weights, k=count))

    def class_prompts(
        self, label: int, class_name: str, subclasses: list[int | None]
    ) -> list[str]:
        name = class_name.replace("_", " ")
        return [self.prompt_template.format(class_name=name, subclass=k) for k in subclasses]
