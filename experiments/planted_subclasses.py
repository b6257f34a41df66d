"""The planted sub-modes of a dataset's training images as a ``subclasses.csv``: ClusDiff with a
perfect clustering, the control that separates a clustering that misses the sub-modes from a
fine-tune that does not learn its sub-class prompts.

    python -m experiments planted-subclasses --data experiments/configs/data/embedded.yaml \\
        --output runs/planted/subclasses.csv

The file has the clustering stage's columns (``callbacks/subclass_writer.py``) and feeds the
fine-tune and the generation in its place; a class's sub-mode names, sorted, get ids 0, 1, ... (``--names``: the names themselves)
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from callbacks.subclass_writer import SUBCLASS_COLUMNS
from datamodules.atomic import atomic_open
from datamodules.diffusion_data import image_key
from datamodules.info import PlantedTruth
from datamodules.long_tailed import LongTailDataModule


def planted_subclasses(data: LongTailDataModule, output: str, names: bool = False) -> Path:
    """Write ``output`` (a ``subclasses.csv``) from the planted sub-mode of every training image.

    Args:
        data: A dataset with planted sub-modes (the embedded dataset).
        output: The CSV to write (its folder is created).
        names: Write each sub-mode's name (``miso``) instead of an id: prompts then name the
            sub-mode as the pre-training captions do, the control of whether a model follows a
            sub-mode word at all (without a fine-tune).
    """
    if not isinstance(data, PlantedTruth):
        raise ValueError(
            f"planted-subclasses: {type(data).__name__} has no planted sub-modes; only the "
            "embedded dataset (datamodules.EmbeddedFoodLT) knows its images' sub-modes"
        )
    planted = data.planted_submodes()
    index = data.index
    class_names = index.class_names
    keys = [image_key(s.path) for s in index.train]
    missing = [k for k in keys if k not in planted]
    if missing:
        raise ValueError(f"planted-subclasses: no planted sub-mode for {len(missing)} training "
                         f"images (e.g. {missing[0]!r})")
    modes: dict[str, set[str]] = defaultdict(set)
    for sample, key in zip(index.train, keys):
        modes[class_names[sample.label]].add(planted[key])
    ids = {name: {m: k for k, m in enumerate(sorted(ms))} for name, ms in modes.items()}
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        writer = csv.writer(f)
        writer.writerow(SUBCLASS_COLUMNS)
        for sample, key in zip(index.train, keys):
            name = class_names[sample.label]
            mode = planted[key]
            writer.writerow([sample.path, sample.label, name, mode if names else ids[name][mode], 0])
    print(f"planted-subclasses: {len(keys)} training images, "
          f"{sum(map(len, ids.values()))} sub-classes -> {path}")
    return path
