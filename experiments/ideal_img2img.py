"""The ideal denoiser's img2img confusion, per planted pair direction, with the embedded world's
pre-training corpus as the model (:mod:`lightning_modules.diffusion.ideal_denoiser`): of a
generated set (its sources, its start timestep), which the world report sets beside the set's
judged confusion, so a model's shortfall reads apart from the corpus's; or, before any model
is trained, from the training images at a generation config's steps and strength.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml
from diffusers import DPMSolverMultistepScheduler

from datamodules import EmbeddedFoodLT
from datamodules.dataset import load_rgb
from datamodules.generation import RequestDataset
from lightning_modules.diffusion.ideal_denoiser import img2img_start, partner_share
from lightning_modules.judge import figures as F

SAMPLER = DPMSolverMultistepScheduler.__name__  # the Synthesizer's


def _pixels(paths: list[str], size: int) -> np.ndarray:
    """Image files as flat vectors in ``[-1, 1]``, resized and cropped as the generation stage
    feeds its source images to the sampler."""
    transform = RequestDataset([], size).transform
    return np.stack([transform(load_rgb(p)).double().reshape(-1).numpy() * 2.0 - 1.0
                     for p in paths])


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
    draws: int = 512, bootstrap: int = 1000, seed: int = 0,
) -> dict:
    """``{"timestep", "alpha_bar", "sources", "confusion": {"a->b": estimate}}`` of an img2img
    set (``samples``: :func:`datamodules.manifest.read_manifest`'s), the estimate a mean over the
    set's images of class ``a`` of their source's ideal partner share, with its bootstrap
    interval over the (noising, image) pairs: the set's sources fixed, the noise's scatter in; ``model``: the pre-trained model's directory (its scheduler)."""
    rows = [s.row for s in samples if s.row.source_image is not None]
    if not rows:
        raise ValueError("the img2img set has no image with a source image")
    t, alpha_bar = _start(rows, model)
    names = data.index.class_names
    sources = {a: [r.source_image for r in rows if r.class_name == names[a]] for a, _ in pairs}
    return {"timestep": t, "alpha_bar": alpha_bar, "sources": "the set's sources",
            "confusion": _confusion(data, sources, pairs, alpha_bar, draws, bootstrap, seed)}


def ideal_from_training(
    data: EmbeddedFoodLT, generation: str | Path, pairs: list[tuple[int, int]],
    draws: int = 512, bootstrap: int = 1000, seed: int = 0,
) -> dict:
    """The same before any model is trained: each pair class's long-tailed training images as
    the sources (those an img2img set starts from), at the steps and strength of a generation
    config (``generation``, e.g. ``experiments/configs/embedded/generate.yaml``; the scheduler
    of the model it names)."""
    init = yaml.safe_load(Path(generation).read_text())["model"]["init_args"]
    config = DPMSolverMultistepScheduler.load_config(
        str(init["pretrained_model_name_or_path"]), subfolder="scheduler")
    t, alpha_bar = img2img_start(config, int(init["num_inference_steps"]), float(init["strength"]))
    sources = {a: [s.path for s in data.index.train if s.label == a] for a, _ in pairs}
    return {"timestep": t, "alpha_bar": alpha_bar, "sources": "the training images",
            "confusion": _confusion(data, sources, pairs, alpha_bar, draws, bootstrap, seed)}


def _confusion(data, sources_of: dict[int, list[str]], pairs, alpha_bar: float, draws: int,
               bootstrap: int, seed: int) -> dict[str, dict | None]:
    names, size, corpus = data.index.class_names, data.image_size, captioned_corpus(data)
    out = {}
    for a, b in pairs:
        of_a = sources_of[a]
        if not of_a:
            out[f"{names[a]}->{names[b]}"] = None
            continue
        shown = corpus[names[a]]
        unique = sorted(set(of_a))
        share = partner_share(_pixels(unique, size), _pixels([p for p, _ in shown], size),
                              np.array([c == names[b] for _, c in shown]), alpha_bar, draws, seed)
        column = {p: k for k, p in enumerate(unique)}
        values = share[:, [column[p] for p in of_a]].reshape(-1)  # every (noising, image)
        out[f"{names[a]}->{names[b]}"] = {**F.bootstrap(
            lambda i: float(values[i].mean()), np.zeros(len(values)), bootstrap, seed).to_dict(),
            "n": len(of_a)}
    return out
