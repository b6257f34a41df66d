"""The ideal denoiser's img2img confusion of a generated set, per planted pair direction: the
same sources, the same start timestep, the embedded world's pre-training corpus as the model
(:mod:`lightning_modules.diffusion.ideal_denoiser`). The world report sets it beside the
judged confusion of the set, so a model's shortfall reads apart from the corpus's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from diffusers import DPMSolverMultistepScheduler
from PIL import Image

from datamodules import EmbeddedFoodLT
from datamodules.dataset import load_rgb
from lightning_modules.diffusion.ideal_denoiser import img2img_start, partner_share
from lightning_modules.judge import figures as F

SAMPLER = "DPMSolverMultistepScheduler"


def pixels(path: str | Path, size: int) -> np.ndarray:
    """An image file as a flat vector in ``[-1, 1]`` at ``size`` x ``size`` (the sampler's)."""
    image = load_rgb(path)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float64).reshape(-1) / 127.5 - 1.0


def captioned_corpus(data: EmbeddedFoodLT) -> dict[str, list[tuple[str, str]]]:
    """Per caption, the pre-training images (path, the class they show)."""
    root = Path(data.root)
    corpus: dict[str, list[tuple[str, str]]] = {}
    with open(root / "meta" / "submodes.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["style"] == "web":
                corpus.setdefault(row["class_name"], []).append(
                    (str(root / "images" / f"{row['image']}.jpg"), row["rendered_class"]))
    return corpus


def _start(rows, model: str | Path) -> tuple[int, float]:
    settings = {(r.params.get("scheduler"), r.params.get("num_inference_steps"),
                 r.params.get("strength")) for r in rows}
    if len(settings) != 1:
        raise ValueError(f"the img2img set mixes sampler settings {sorted(map(str, settings))}; "
                         "expected one (scheduler, steps, strength)")
    ((scheduler, steps, strength),) = settings
    if scheduler != SAMPLER:
        raise ValueError(f"the img2img set was sampled with {scheduler}; the ideal start is "
                         f"computed for {SAMPLER}, the project's sampler")
    config = DPMSolverMultistepScheduler.load_config(str(model), subfolder="scheduler")
    return img2img_start(config, int(steps), float(strength))


def ideal_img2img_confusion(
    data: EmbeddedFoodLT, samples, model: str | Path, pairs: list[tuple[int, int]],
    draws: int = 32, bootstrap: int = 1000, seed: int = 0,
) -> dict:
    """``{"timestep", "alpha_bar", "confusion": {"a->b": estimate}}`` of an img2img set
    (``samples``: :func:`datamodules.manifest.read_manifest`'s), the estimate a mean over the
    set's images of class ``a`` of their source's ideal partner share, with its bootstrap
    interval over those images; ``model``: the pre-trained model's directory (its scheduler)."""
    rows = [s.row for s in samples if s.row.source_image is not None]
    if not rows:
        raise ValueError("the img2img set has no image with a source image")
    t, alpha_bar = _start(rows, model)
    names, size, corpus = data.index.class_names, data.image_size, captioned_corpus(data)
    out = {}
    for a, b in pairs:
        of_a = [r.source_image for r in rows if r.class_name == names[a]]
        if not of_a:
            out[f"{names[a]}->{names[b]}"] = None
            continue
        shown = corpus[names[a]]
        sources = sorted(set(of_a))
        share = partner_share(np.stack([pixels(p, size) for p in sources]),
                              np.stack([pixels(p, size) for p, _ in shown]),
                              np.array([c == names[b] for _, c in shown]), alpha_bar, draws, seed)
        values = np.array([share[sources.index(p)] for p in of_a])
        out[f"{names[a]}->{names[b]}"] = F.bootstrap(
            lambda i: float(values[i].mean()), np.zeros(len(values)), bootstrap, seed).to_dict()
    return {"timestep": t, "alpha_bar": alpha_bar, "confusion": out}
