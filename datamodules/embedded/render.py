"""Render one embedded-dataset image from a dish spec, a sub-mode, a style and a generator.

The picture is a plate on a table seen from above. Nuisance factors shared by all classes
(:data:`~datamodules.embedded.spec.NUISANCE`: table colour, plate size and position, food size,
rotation and tint, lighting, a utensil across the plate, pixel noise) vary per image, so that
neither the class nor the sub-mode can be read off a single pixel and a few images of a class
cover little of its variation. ``web`` > 0 draws the pre-training corpus's "web" look
(:data:`~datamodules.embedded.spec.WEB_STYLE`): other tables, warmer colours, closer shots, blur.
"""

from __future__ import annotations

import numpy as np

from datamodules.embedded.spec import NUISANCE, WEB_STYLE, DishSpec, SubMode


def render_dish(
    dish: DishSpec, submode: SubMode, rng: np.random.Generator, size: int, web: float = 0.0
) -> np.ndarray:
    """Draw one image.

    Args:
        dish: The class.
        submode: The planted sub-mode (one of ``dish.submodes``).
        rng: The image's own generator (an image depends on nothing else).
        size: Side length in pixels.
        web: Strength of the web style in [0, 1] (0: the photo style of the train/test splits).

    Returns:
        ``uint8`` array of shape ``(size, size, 3)``.
    """
    if not 0.0 <= web <= 1.0:
        raise ValueError(f"web={web}: expected a style strength in [0, 1]")
    n, w = NUISANCE, WEB_STYLE
    zoom = 1.0 + w.zoom * web
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size  # pixel centres in [0, 1]
    yy, xx = 0.5 + (yy - 0.5) / zoom, 0.5 + (xx - 0.5) / zoom  # closer shot: a smaller window
    img = np.empty((size, size, 3))
    table = np.asarray(n.table) * rng.uniform(*n.table_scale)
    web_table = np.asarray(w.tables[rng.integers(len(w.tables))])
    img[:] = (1.0 - web) * table + web * web_table
    if rng.random() < n.clutter_probability:
        _cup(img, xx, yy, rng)

    centre = 0.5 + rng.normal(0.0, n.plate_shift, size=2)
    plate_r = rng.uniform(*n.plate_radius)
    plate = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= plate_r**2
    img[plate] = (0.94, 0.94, 0.92)

    # Food coordinates: rotated frame centred on the plate, scaled to the food's half-size.
    angle = rng.uniform(0, np.pi)
    u = (xx - centre[1]) * np.cos(angle) + (yy - centre[0]) * np.sin(angle)
    v = -(xx - centre[1]) * np.sin(angle) + (yy - centre[0]) * np.cos(angle)
    half = plate_r * rng.uniform(*n.food_scale)
    u, v = u / half, v / half
    food = _food_mask(dish.shape, u, v)
    if dish.shape == "bowl":
        img[(u**2 + v**2 <= 1.18**2) & ~food] = (0.12, 0.12, 0.14)

    tint = rng.uniform(*n.food_tint, size=3)
    base = np.asarray(submode.base if submode.base is not None else dish.base) * tint
    accent = np.asarray(dish.accent) * tint
    t = _texture(dish.texture, dish.frequency, u, v, rng)[..., None]
    colour = (1 - t) * base + t * accent
    img[food] = colour[food]
    if submode.topping is not None:
        _scatter_topping(img, food, u, v, np.asarray(submode.topping), rng)
    if rng.random() < n.occluder_probability:
        _utensil(img, xx, yy, rng)

    direction = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(*n.light_gradient) * (
        (xx - 0.5) * np.cos(direction) + (yy - 0.5) * np.sin(direction))
    img = img * (rng.uniform(*n.brightness) + gradient[..., None])
    if web > 0:
        img = _web_look(img, web, size)
    img = img + rng.normal(0.0, n.noise, size=img.shape)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def _web_look(img: np.ndarray, web: float, size: int) -> np.ndarray:
    """Warmer, more saturated, blurred: the web style's colour and optics at strength ``web``."""
    w = WEB_STYLE
    img = img * np.array([1.0 + w.warm * web, 1.0, 1.0 - w.warm * web])
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (1.0 + w.saturation * web) * (img - grey)
    return _gaussian_blur(img, w.blur * web * size / 16)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an ``(H, W, 3)`` image (edges replicated)."""
    if sigma <= 0.05:
        return img
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(t * padded[k : k + img.shape[0]] for k, t in enumerate(taps))
    return sum(t * rows[:, k : k + img.shape[1]] for k, t in enumerate(taps))


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
    """Paint 3-5 large round topping pieces at random places on the food."""
    for _ in range(int(rng.integers(3, 6))):
        cu, cv = rng.uniform(-0.6, 0.6), rng.uniform(-0.45, 0.45)
        piece = ((u - cu) ** 2 + (v - cv) ** 2 <= rng.uniform(0.22, 0.3) ** 2) & food
        img[piece] = colour


def _cup(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> None:
    """A cup on the table, near a random corner (the plate, drawn next, may cover part of it)."""
    corner = rng.integers(0, 2, size=2) * 0.8 + 0.1 + rng.normal(0.0, 0.03, size=2)
    radius = rng.uniform(0.12, 0.18)
    img[(yy - corner[0]) ** 2 + (xx - corner[1]) ** 2 <= radius**2] = rng.uniform(0.1, 0.9, 3)


def _utensil(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> None:
    """A grey utensil lying across the picture: a long thin bar, random angle and offset."""
    angle, offset = rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3)
    across = (xx - 0.5) * np.sin(angle) - (yy - 0.5) * np.cos(angle) - offset
    along = (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle)
    img[(np.abs(across) <= 0.045) & (np.abs(along) <= 0.42)] = (0.55, 0.56, 0.60)
