"""Render one embedded-dataset image from a dish spec, a sub-mode and a random generator.

The picture is a plate on a table seen from above. Nuisance factors shared by all classes (table
colour, plate position and size, food rotation, brightness, pixel noise) vary per image, so that
neither the class nor the sub-mode can be read off a single pixel.
"""

from __future__ import annotations

import numpy as np

from datamodules.embedded.spec import TABLE_COLOURS, DishSpec, SubMode


def render_dish(dish: DishSpec, submode: SubMode, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw one image.

    Args:
        dish: The class.
        submode: The planted sub-mode (one of ``dish.submodes``).
        rng: The image's own generator (an image depends on nothing else).
        size: Side length in pixels.

    Returns:
        ``uint8`` array of shape ``(size, size, 3)``.
    """
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size  # pixel centres in [0, 1]
    img = np.empty((size, size, 3))
    img[:] = TABLE_COLOURS[rng.integers(len(TABLE_COLOURS))]

    centre = 0.5 + rng.normal(0.0, 0.035, size=2)
    plate_r = 0.46 + rng.normal(0.0, 0.015)
    plate = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= plate_r**2
    img[plate] = (0.94, 0.94, 0.92)

    # Food coordinates: rotated frame centred on the plate, scaled to the food's half-size.
    angle = rng.uniform(0, np.pi)
    u = (xx - centre[1]) * np.cos(angle) + (yy - centre[0]) * np.sin(angle)
    v = -(xx - centre[1]) * np.sin(angle) + (yy - centre[0]) * np.cos(angle)
    half = plate_r * rng.uniform(0.68, 0.78)
    u, v = u / half, v / half
    food = _food_mask(dish.shape, u, v)
    if dish.shape == "bowl":
        img[(u**2 + v**2 <= 1.18**2) & ~food] = (0.12, 0.12, 0.14)

    base = np.asarray(submode.base if submode.base is not None else dish.base)
    accent = np.asarray(dish.accent)
    t = _texture(dish.texture, dish.frequency, u, v, rng)[..., None]
    colour = (1 - t) * base + t * accent
    img[food] = colour[food]

    if submode.topping is not None:
        _scatter_topping(img, food, u, v, np.asarray(submode.topping), rng)

    img = img * rng.uniform(0.92, 1.08) + rng.normal(0.0, 0.025, size=img.shape)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def _food_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "rect":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.7)
    if shape == "bowl":
        return u**2 + v**2 <= 0.95**2
    if shape == "round":
        return u**2 + v**2 <= 1.0
    raise ValueError(f"unknown dish shape {shape!r}; expected 'rect', 'round' or 'bowl'")


def _texture(kind: str, freq: float, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Texture intensity in [0, 1] over the food's frame."""
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "grain":
        coarse = np.sin(freq * np.pi * u + phase) * np.sin(freq * np.pi * v + 0.7 * phase)
        return 0.5 + 0.3 * coarse + 0.2 * rng.uniform(-1, 1, size=u.shape)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sign(np.sin(freq * np.pi * v + phase))
    if kind == "waves":
        return 0.5 + 0.5 * np.sin(freq * np.pi * (u + 0.15 * np.sin(6 * v + phase)))
    if kind == "dots":
        d = np.sin(freq * np.pi * u + phase) * np.sin(freq * np.pi * v + phase)
        return (d > 0.55).astype(float)
    if kind == "rings":
        return 0.5 + 0.5 * np.sign(np.sin(freq * np.pi * np.sqrt(u**2 + v**2) + phase))
    if kind == "layers":
        return 0.5 + 0.5 * np.sin(freq * np.pi * v + phase)
    if kind == "checker":
        return (np.sin(freq * np.pi * u + phase) * np.sin(freq * np.pi * v) > 0).astype(float)
    if kind == "blobs":
        return 0.5 + 0.25 * (np.sin(freq * 3.1 * u + phase) + np.sin(freq * 2.3 * v - phase))
    raise ValueError(f"unknown dish texture {kind!r}")


def _scatter_topping(
    img: np.ndarray, food: np.ndarray, u: np.ndarray, v: np.ndarray, colour: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint 5-8 round topping pieces at random places on the food."""
    for _ in range(int(rng.integers(5, 9))):
        cu, cv = rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 0.5)
        piece = ((u - cu) ** 2 + (v - cv) ** 2 <= rng.uniform(0.13, 0.2) ** 2) & food
        img[piece] = colour
