"""The embedded dataset: deterministic, in Food-101's layout, with its planted structure."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections import Counter

import numpy as np
import pytest

from datamodules.embedded import EmbeddedSettings, ensure_embedded_dataset
from datamodules.embedded.cue_energy import dish_cue_energy, topping_energy
from datamodules.embedded.spec import CONFUSABLE_PAIRS, DISHES, PHO_TINT


def _digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_cached(tmp_path):
    settings = EmbeddedSettings(image_size=8, n_max=4, imbalance_factor=2, num_test=1, num_pretrain=1)
    a = ensure_embedded_dataset(tmp_path / "a", settings)
    b = ensure_embedded_dataset(tmp_path / "b", settings)
    assert _digest(a) == _digest(b)
    assert ensure_embedded_dataset(tmp_path / "a", settings) == a  # cached, not rebuilt
    other = ensure_embedded_dataset(tmp_path / "a", EmbeddedSettings(
        image_size=8, n_max=4, imbalance_factor=2, num_test=1, num_pretrain=1, seed=1))
    assert other != a and _digest(other) != _digest(a)
    assert not list((tmp_path / "a").glob(".*"))  # no temporary directory left behind


def test_embedded_structure(tiny_datamodule):
    info = tiny_datamodule.dataset_info
    assert info.class_names == [d.name for d in DISHES]
    assert info.class_counts[0] == 12 and info.class_counts[-1] == 2  # imbalance factor 6
    assert info.head_mask == [True] * 3 + [False] * 7
    test_counts = Counter(s.label for s in tiny_datamodule.index.test)
    assert set(test_counts.values()) == {4}  # balanced test split
    submodes = tiny_datamodule.planted_submodes()
    assert len(submodes) == 10 * (12 + 4 + 4)
    valid = {(d.name, m.name) for d in DISHES for m in d.submodes}
    assert all((image.split("/")[0], mode) in valid for image, mode in submodes.items()
               if "/pretrain_" not in image)  # a corpus image may show its partner
    assert tiny_datamodule.confusable_pairs() == [tuple(p) for p in CONFUSABLE_PAIRS]
    assert len(CONFUSABLE_PAIRS) >= 2


def test_every_class_plants_three_skewed_submodes():
    assert len(DISHES) == 10
    assert all([m.weight for m in d.submodes] == [0.6, 0.3, 0.1] for d in DISHES)


def _rows(root) -> list[dict]:
    with open(root / "meta" / "submodes.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("noise", [
    0.3, {"garlic_bread": 0.2, "french_toast": 0.3, "ramen": 0.1, "pho": 0.5},
], ids=["one-rate", "per-partner"])
def test_caption_noise_rate_in_the_written_corpus_equals_the_setting(tmp_path, noise):
    settings = EmbeddedSettings(image_size=8, n_max=4, imbalance_factor=2, num_test=2,
                                num_pretrain=10, caption_noise=noise)
    rows = _rows(ensure_embedded_dataset(tmp_path, settings))
    partners = {c for pair in CONFUSABLE_PAIRS for c in pair}
    for name in (d.name for d in DISHES):
        corpus = [r for r in rows if r["class_name"] == name and r["style"] == "web"]
        shown = Counter(r["rendered_class"] for r in corpus)
        wrong = sum(n for c, n in shown.items() if c != name)
        rate = (noise[name] if isinstance(noise, dict) else noise) if name in partners else 0.0
        assert len(corpus) == 10 and wrong == round(10 * rate)
        if name in partners:  # the wrong ones show the partner
            partner = next(b if a == name else a for a, b in CONFUSABLE_PAIRS if name in (a, b))
            assert set(shown) == {name, partner}
    assert all(r["rendered_class"] == r["class_name"] for r in rows if r["style"] == "photo")


def test_web_style_changes_the_corpus_and_not_the_train_or_test_split(tmp_path):
    base = dict(image_size=8, n_max=3, imbalance_factor=1, num_test=2, num_pretrain=3)
    photo = ensure_embedded_dataset(tmp_path / "a", EmbeddedSettings(**base, web_style=0.0))
    web = ensure_embedded_dataset(tmp_path / "b", EmbeddedSettings(**base, web_style=0.8))
    split_files = {p.relative_to(photo): p for p in (photo / "images").rglob("*.jpg")}
    for path in (web / "images").rglob("*.jpg"):
        same = path.read_bytes() == split_files[path.relative_to(web)].read_bytes()
        assert same == (not path.name.startswith("pretrain")), path
    styles = Counter((r["image"].split("/")[1].split("_")[0], r["style"]) for r in _rows(web))
    assert set(styles) == {("train", "photo"), ("test", "photo"), ("pretrain", "web")}


def test_submode_weights_of_a_split_follow_the_spec(tmp_path):
    settings = EmbeddedSettings(image_size=8, n_max=300, imbalance_factor=1, num_test=1,
                                num_pretrain=0)
    rows = [r for r in _rows(ensure_embedded_dataset(tmp_path, settings))
            if "/train_" in r["image"]]
    for dish in DISHES:
        counts = Counter(r["submode"] for r in rows if r["class_name"] == dish.name)
        for mode in dish.submodes:
            assert abs(counts[mode.name] / 300 - mode.weight) < 0.06, (dish.name, counts)


def test_spec_edits_give_a_new_dataset_directory(monkeypatch):
    import dataclasses

    from datamodules.embedded import build

    settings = EmbeddedSettings()
    before = settings.fingerprint()
    monkeypatch.setattr(build, "NUISANCE", dataclasses.replace(build.NUISANCE, noise=0.05))
    assert settings.fingerprint() != before


@pytest.mark.parametrize("noise, message", [
    ({"garlic_bread": 0.2, "pho": 0.4}, "expected every confusable partner once"),
    ({"garlic_bread": 0.2, "french_toast": 0.3, "ramen": 0.1, "pho": 1.5}, "caption_noise of pho"),
    (-0.1, "caption_noise of"),
])
def test_caption_noise_outside_the_partners_or_the_unit_interval_is_refused(noise, message):
    with pytest.raises(ValueError, match=message):
        EmbeddedSettings(caption_noise=noise)


def test_pho_is_ramen_under_its_tint_and_neither_has_a_topping():
    dishes = {d.name: d for d in DISHES}
    ramen, pho = dishes["ramen"], dishes["pho"]
    assert (ramen.shape, ramen.texture, ramen.frequency) == (pho.shape, pho.texture, pho.frequency)
    assert PHO_TINT != (1.0, 1.0, 1.0)
    pairs = [(ramen.base, pho.base), (ramen.accent, pho.accent)]
    pairs += [(r.base, p.base) for r, p in zip(ramen.submodes, pho.submodes, strict=True)]
    for r, p in pairs:
        assert p == pytest.approx(tuple(c * f for c, f in zip(r, PHO_TINT)))
    assert [m.weight for m in ramen.submodes] == [m.weight for m in pho.submodes]
    assert {m.topping for m in ramen.submodes + pho.submodes} == {None}


GREEN = (0.05, 0.80, 0.30)  # version 11's ramen garnish


def _recoloured(dish, garnish):
    return dataclasses.replace(dish, submodes=tuple(
        dataclasses.replace(m, topping=garnish) for m in dish.submodes))


def test_a_topping_in_the_food_s_own_colour_adds_no_signal():
    ramen = _recoloured({d.name: d for d in DISHES}["ramen"], GREEN)
    m = ramen.submodes[0]
    signal, texture = topping_energy(ramen, dataclasses.replace(m, topping=m.base), 0.9, 4)
    assert signal == 0.0 and texture > 0
    assert topping_energy(ramen, m, 0.9, 4)[0] > 10


def test_the_cue_energy_grows_with_a_garnish_s_contrast_and_is_nil_without_one():
    dishes = {d.name: d for d in DISHES}
    ramen = dishes["ramen"]
    broth = np.asarray(ramen.submodes[0].base)
    half = tuple((broth + np.asarray(GREEN)) / 2)
    signals = [dish_cue_energy(_recoloured(ramen, g), 0.8, 8)["signal"] for g in (half, GREEN)]
    assert 5 < signals[0] < 0.8 * signals[1]
    web = EmbeddedSettings().web_style
    assert [dish_cue_energy(dishes[c], web, 4)["signal"] for c in ("ramen", "pho")] == [0.0, 0.0]
