"""The embedded dataset: deterministic, in Food-101's layout, with its planted structure."""

from __future__ import annotations

import hashlib
from collections import Counter

from datamodules.embedded import EmbeddedSettings, ensure_embedded_dataset
from datamodules.embedded.spec import CONFUSABLE_PAIRS, DISHES


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
    assert all((image.split("/")[0], mode) in valid for image, mode in submodes.items())
    assert tiny_datamodule.confusable_pairs() == [tuple(p) for p in CONFUSABLE_PAIRS]
    assert len(CONFUSABLE_PAIRS) >= 2


def test_every_class_plants_two_to_four_submodes():
    assert len(DISHES) == 10
    assert all(2 <= len(d.submodes) <= 4 for d in DISHES)
