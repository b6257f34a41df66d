"""The embedded dataset's dishes: ten classes, each with planted sub-modes ("cooking variations").

Every class is a plate of food seen from above. A class fixes the food's shape, texture and base
colours; a sub-mode changes the colour of the whole dish (a broth, a sauce, a glaze) and usually
adds a topping, so that the sub-modes are the strongest variation within a class (the table's
colour and the plate's position vary much less).
Two pairs are planted to be confusable: they share shape and texture and differ only by a small
shift of colour and texture frequency (``garlic_bread``/``french_toast``, ``ramen``/``pho``).

Colours are RGB in [0, 1]. The specs are data, not code: the renderer in ``render.py`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class SubMode:
    """One planted cooking variation of a class.

    Attributes:
        name: Short name, recorded in the metadata.
        weight: Relative frequency of the sub-mode within its class.
        topping: Colour of the scattered topping dots (``None``: no topping).
        base: Override of the class's base colour (``None``: keep the class's).
    """

    name: str
    weight: float
    topping: RGB | None = None
    base: RGB | None = None


@dataclass(frozen=True)
class DishSpec:
    """A class of the embedded dataset.

    Attributes:
        name: Class name, a Food-101-style identifier.
        shape: ``"rect"``, ``"round"`` or ``"bowl"`` (round food inside a dark rim).
        texture: ``"grain"``, ``"stripes"``, ``"waves"``, ``"dots"``, ``"rings"``, ``"layers"``,
            ``"checker"`` or ``"blobs"``.
        base: Main food colour.
        accent: Second colour the texture mixes in.
        frequency: Spatial frequency of the texture (cycles across the food).
        submodes: The planted sub-modes (2 to 4).
    """

    name: str
    shape: str
    texture: str
    base: RGB
    accent: RGB
    frequency: float
    submodes: tuple[SubMode, ...] = field(default_factory=tuple)


DISHES: tuple[DishSpec, ...] = (
    DishSpec("garlic_bread", "rect", "grain", (0.86, 0.66, 0.34), (0.96, 0.86, 0.56), 6.0, (
        SubMode("plain", 0.5),
        SubMode("herbs", 0.3, topping=(0.15, 0.55, 0.15), base=(0.70, 0.64, 0.30)),
        SubMode("cheese", 0.2, topping=(0.98, 0.95, 0.75), base=(0.97, 0.88, 0.60)),
    )),
    DishSpec("pizza", "round", "dots", (0.93, 0.78, 0.38), (0.80, 0.18, 0.12), 5.0, (
        SubMode("margherita", 0.45, topping=(0.97, 0.97, 0.93)),
        SubMode("pepperoni", 0.35, topping=(0.55, 0.08, 0.08), base=(0.90, 0.55, 0.30)),
        SubMode("veggie", 0.2, topping=(0.20, 0.60, 0.20), base=(0.74, 0.80, 0.42)),
    )),
    DishSpec("ramen", "bowl", "waves", (0.90, 0.78, 0.50), (0.98, 0.92, 0.62), 7.0, (
        SubMode("shoyu", 0.5, base=(0.62, 0.40, 0.20)),
        SubMode("tonkotsu", 0.3, base=(0.95, 0.92, 0.84)),
        SubMode("miso", 0.2, base=(0.90, 0.55, 0.20)),
    )),
    DishSpec("sushi", "round", "rings", (0.96, 0.96, 0.94), (0.08, 0.12, 0.08), 3.0, (
        SubMode("salmon", 0.4, topping=(0.98, 0.50, 0.30), base=(0.98, 0.84, 0.76)),
        SubMode("tuna", 0.35, topping=(0.75, 0.10, 0.20), base=(0.88, 0.66, 0.70)),
        SubMode("cucumber", 0.25, topping=(0.35, 0.75, 0.30), base=(0.82, 0.95, 0.78)),
    )),
    DishSpec("chocolate_cake", "rect", "layers", (0.30, 0.17, 0.08), (0.50, 0.30, 0.15), 4.0, (
        SubMode("plain", 0.5),
        SubMode("strawberry", 0.3, topping=(0.90, 0.12, 0.20), base=(0.48, 0.14, 0.14)),
        SubMode("cream", 0.2, topping=(0.98, 0.96, 0.90), base=(0.58, 0.42, 0.30)),
    )),
    DishSpec("french_toast", "rect", "grain", (0.80, 0.58, 0.32), (0.93, 0.80, 0.52), 7.0, (
        SubMode("plain", 0.45),
        SubMode("berries", 0.35, topping=(0.40, 0.10, 0.45), base=(0.72, 0.48, 0.42)),
        SubMode("sugar", 0.2, topping=(0.99, 0.99, 0.99), base=(0.92, 0.80, 0.62)),
    )),
    DishSpec("caesar_salad", "round", "blobs", (0.45, 0.72, 0.30), (0.80, 0.90, 0.55), 4.0, (
        SubMode("classic", 0.4, topping=(0.95, 0.90, 0.70)),
        SubMode("chicken", 0.35, topping=(0.85, 0.70, 0.45), base=(0.66, 0.78, 0.42)),
        SubMode("shrimp", 0.15, topping=(0.98, 0.55, 0.50), base=(0.36, 0.58, 0.36)),
        SubMode("bacon", 0.1, topping=(0.55, 0.20, 0.15), base=(0.52, 0.60, 0.20)),
    )),
    DishSpec("pho", "bowl", "waves", (0.92, 0.82, 0.56), (0.99, 0.94, 0.66), 8.0, (
        SubMode("beef", 0.5, base=(0.66, 0.44, 0.24)),
        SubMode("chicken", 0.3, base=(0.94, 0.90, 0.78)),
        SubMode("vegetarian", 0.2, base=(0.62, 0.72, 0.35)),
    )),
    DishSpec("waffles", "rect", "checker", (0.88, 0.68, 0.30), (0.66, 0.44, 0.16), 4.0, (
        SubMode("plain", 0.5),
        SubMode("blueberry", 0.3, topping=(0.20, 0.25, 0.65), base=(0.72, 0.62, 0.56)),
        SubMode("syrup", 0.2, base=(0.62, 0.36, 0.10)),
    )),
    DishSpec("tiramisu", "rect", "stripes", (0.90, 0.84, 0.70), (0.42, 0.26, 0.14), 3.0, (
        SubMode("classic", 0.6),
        SubMode("berry", 0.4, topping=(0.75, 0.10, 0.30), base=(0.86, 0.64, 0.64)),
    )),
)

CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("garlic_bread", "french_toast"),
    ("ramen", "pho"),
)

TABLE_COLOURS: tuple[RGB, ...] = (
    (0.55, 0.38, 0.24),  # wood
    (0.58, 0.40, 0.25),  # lighter wood
    (0.52, 0.36, 0.23),  # darker wood
)
