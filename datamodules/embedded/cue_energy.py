"""How strongly a dish's toppings stand out in its renders: the energy of a planted cue.

Versions 8 to 11 told ramen from pho by a garnish; a model trained on a corpus whose captions
mix the two partners leaned toward the partner whose cue carried more energy (docs/world.md), so
version 11 chose two garnishes of one energy. Version 12 has none (its signal is 0 for every
class of a planted pair). Two measures, each averaged over renders drawn with fixed generators
and weighted by the sub-modes' weights:

- ``signal``: the pixel signal a topping adds to its dish, the sum over pixels of the RGB
  distance between a render and the same render (same generator) with the topping painted in
  the food's own base colour; what a pixel-space model's squared-error loss sees of it;
- ``texture``: the fine texture of the renders, :func:`laplacian_energy` (the world report's
  texture energy), toppings included.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from datamodules.embedded.render import render_dish
from datamodules.embedded.spec import DishSpec, SubMode


def laplacian_energy(image: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of an ``(H, W, 3)`` image's grey level (in [0, 1])
    over its central square of 3/8 of the side, where the food is."""
    g = np.asarray(image, dtype=np.float64).mean(axis=2)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    lo = (g.shape[0] * 5) // 16
    return float(lap[lo - 1:g.shape[0] - lo - 1, lo - 1:g.shape[1] - lo - 1].mean())


def _render(dish: DishSpec, submode: SubMode, seed: int, size: int, web: float) -> np.ndarray:
    return render_dish(dish, submode, np.random.default_rng(seed), size, web) / 255.0


def topping_energy(
    dish: DishSpec, submode: SubMode, web: float, images: int = 60, size: int = 16
) -> tuple[float, float]:
    """(signal, texture) of one sub-mode's renders, means over ``images`` fixed generators
    (seeds 0 .. images - 1); the signal is 0 for a sub-mode without a topping."""
    if images < 1:
        raise ValueError(f"images={images}: expected at least one render")
    base = submode.base if submode.base is not None else dish.base
    flat = dataclasses.replace(submode, topping=base)  # same draws, topping in the food's colour
    signal, texture = [], []
    for seed in range(images):
        shown = _render(dish, submode, seed, size, web)
        texture.append(laplacian_energy(shown))
        if submode.topping is not None:
            plain = _render(dish, flat, seed, size, web)
            signal.append(float(np.sqrt(((shown - plain) ** 2).sum(axis=-1)).sum()))
    return (float(np.mean(signal)) if signal else 0.0), float(np.mean(texture))


def dish_cue_energy(dish: DishSpec, web: float, images: int = 60) -> dict[str, float]:
    """``{"signal", "texture"}`` of a dish's sub-modes, weighted by their weights."""
    weights = np.array([m.weight for m in dish.submodes])
    parts = np.array([topping_energy(dish, m, web, images) for m in dish.submodes])
    signal, texture = weights @ parts / weights.sum()
    return {"signal": float(signal), "texture": float(texture)}
