"""Food-101 / VFN-LT layouts on disk, long-tail profiles, head masks, and the bad-input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules import VFNLT, ExponentialProfile, Food101LT
from datamodules.dataset import CorruptImageError
from datamodules.layout import DatasetLayoutError
from datamodules.long_tail import exponential_counts, head_mask, subsample_per_class

CLASSES = ["apple_pie", "bibimbap", "churros"]


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(path)


def make_food101(root: Path, per_class_train: int = 6, per_class_test: int = 2) -> Path:
    """A Food-101-layout directory of tiny JPEGs."""
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        lines = []
        for c, name in enumerate(CLASSES):
            for k in range(n):
                image_id = f"{split}{k}"
                _jpeg(root / "images" / name / f"{image_id}.jpg", 40 * c + k)
                lines.append(f"{name}/{image_id}")
        (root / "meta" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_food101_layout_loads_through_the_real_datamodule(tmp_path):
    dm = Food101LT(root=str(make_food101(tmp_path / "food-101")), image_size=16, resize_size=18,
                   num_head_classes=1, batch_size=4)
    info = dm.dataset_info
    assert info.class_names == CLASSES
    assert info.class_counts == [6, 6, 6]
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16)
    assert set(labels.tolist()) <= {0, 1, 2}
    assert len(dm.datasets["test"]) == 6  # balanced test set untouched


def test_validation_held_out_of_the_test_split(tmp_path):
    root = make_food101(tmp_path / "food-101")
    dm = Food101LT(root=str(root), image_size=16, resize_size=18, num_head_classes=1,
                   val_per_class=1, holdout_seed=3)
    dm.setup("fit")
    val, test = dm.datasets["val"].samples, dm.datasets["test"].samples
    assert sorted(s.label for s in val) == [0, 1, 2]  # one per class
    assert sorted(s.label for s in test) == [0, 1, 2]  # the rest of the 2 per class
    assert {s.path for s in val}.isdisjoint(s.path for s in test)
    assert sorted(s.path for s in val + test) == sorted(s.path for s in dm.index.test)
    assert dm.val_dataloader().dataset is dm.datasets["val"]
    same = Food101LT(root=str(root), num_head_classes=1, val_per_class=1, holdout_seed=3)
    assert same.validation_split()[0] == val  # seeded
    with pytest.raises(ValueError, match=r"holding out 2 images per class leaves none of "
                                         r"classes \[0, 1, 2\] \(they have \[2, 2, 2\]\)"):
        Food101LT(root=str(root), num_head_classes=1, val_per_class=2).validation_split()


def test_generated_profile_is_long_tailed_and_labelled_a_stand_in(tmp_path):
    root = make_food101(tmp_path / "food-101")
    dm = Food101LT(root=str(root), long_tail=ExponentialProfile(n_max=6, imbalance_factor=6),
                   num_head_classes=1)
    with pytest.warns(UserWarning, match="stand-in"):
        info = dm.dataset_info
    assert info.class_counts == [6, 2, 1]
    assert "NOT an official" in info.split_source
    assert info.head_mask == [True, False, False]
    assert len(dm.index.test) == 6


def test_split_file_selects_the_listed_images(tmp_path):
    root = make_food101(tmp_path / "food-101")
    (root / "meta" / "train_lt.txt").write_text("apple_pie/train0\napple_pie/train1\nbibimbap/train1\nchurros/train3\n")
    dm = Food101LT(root=str(root), train_split="meta/train_lt.txt", num_head_classes=1)
    assert dm.dataset_info.class_counts[0] == 2
    assert dm.index.train[-1].path.endswith("churros/train3.jpg")


def test_class_missing_from_training_split_is_an_error(tmp_path):
    root = make_food101(tmp_path / "food-101")
    (root / "meta" / "lt.txt").write_text("apple_pie/train0\n")
    with pytest.raises(ValueError, match="no image of classes"):
        Food101LT(root=str(root), train_split="meta/lt.txt", num_head_classes=1).dataset_info


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*Expected layout.*classes\.txt"):
        Food101LT(root=str(tmp_path / "nowhere")).index


def test_missing_split_file_names_it(tmp_path):
    root = make_food101(tmp_path / "food-101")
    with pytest.raises(FileNotFoundError, match="split file not found.*lt_missing.txt"):
        Food101LT(root=str(root), train_split="meta/lt_missing.txt").index


def test_split_line_naming_a_missing_image_names_the_line(tmp_path):
    root = make_food101(tmp_path / "food-101")
    (root / "meta" / "lt.txt").write_text("apple_pie/train0\nbibimbap/ghost\n")
    with pytest.raises(FileNotFoundError, match=r"lt\.txt:2: 'bibimbap/ghost'"):
        Food101LT(root=str(root), train_split="meta/lt.txt").index


def test_split_class_not_in_classes_txt_is_an_error(tmp_path):
    root = make_food101(tmp_path / "food-101")
    (root / "meta" / "lt.txt").write_text("apple_pie/train0\nsushi/train0\n")
    with pytest.raises(DatasetLayoutError, match=r"lt\.txt:2: class 'sushi' is not in the class list"):
        Food101LT(root=str(root), train_split="meta/lt.txt").index


def test_corrupt_image_error_names_the_file_and_skip_corrupt_counts(tmp_path):
    root = make_food101(tmp_path / "food-101")
    bad = root / "images" / "bibimbap" / "train2.jpg"
    bad.write_bytes(b"not a jpeg")
    # the headers are checked before any work starts
    with pytest.raises(CorruptImageError, match=r"1 of 18 images of the training split cannot "
                                                r"be read: \[.*train2.jpg"):
        Food101LT(root=str(root), image_size=16, resize_size=16, num_head_classes=1).setup("fit")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    noise.save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[:1500])  # a valid header, the pixels cut off
    Food101LT(root=str(root), num_head_classes=1).index
    with pytest.raises(CorruptImageError, match="train2.jpg"):
        Food101LT(root=str(root), num_head_classes=1, verify_images="decode").index

    # without the check, the file fails when it is read, naming it
    bad.write_bytes(b"not a jpeg")
    dm = Food101LT(root=str(root), image_size=16, resize_size=16, num_head_classes=1,
                   verify_images="none")
    dm.setup("fit")
    index = [s.path for s in dm.datasets["train"].samples].index(str(bad))
    with pytest.raises(CorruptImageError, match="train2.jpg"):
        dm.datasets["train"][index]

    skipping = Food101LT(root=str(root), num_head_classes=1, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        assert skipping.dataset_info.class_counts == [6, 5, 6]


def make_vfn(root: Path) -> Path:
    """A VFN-LT-layout directory: class subfolders plus split lists."""
    for c, name in enumerate(CLASSES):
        for k in range(3):
            _jpeg(root / "images" / name / f"img{k}.png", 30 * c)
    (root / "classes.txt").write_text("\n".join(CLASSES))
    (root / "train_lt.txt").write_text("apple_pie/img0.png\napple_pie/img1.png\nbibimbap/img0.png\n"
                                      "churros/img2.png\n")
    (root / "test.txt").write_text("\n".join(f"{n}/img2.png" for n in CLASSES))
    return root


def test_vfn_layout_with_split_lists(tmp_path):
    info = VFNLT(root=str(make_vfn(tmp_path / "vfn")), head_threshold=2).dataset_info
    assert info.class_counts == [2, 1, 1]
    assert info.head_mask == [True, False, False]


def test_exponential_counts_match_food101_lt():
    counts = exponential_counts(750, 187.5, 101)
    assert counts[0] == 750 and counts[-1] == 4
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_head_mask_by_count_and_threshold():
    counts = [5, 50, 20, 50, 1]
    assert head_mask(counts, num_head_classes=2) == [False, True, False, True, False]
    assert head_mask(counts, head_threshold=20) == [False, True, True, True, False]
    with pytest.raises(ValueError, match="exactly one"):
        head_mask(counts)
    with pytest.raises(ValueError, match="num_head_classes=9"):
        head_mask(counts, num_head_classes=9)


def test_subsample_is_seeded_and_exact():
    labels = [0] * 10 + [1] * 10
    a = subsample_per_class(labels, [4, 2], seed=1)
    assert a == subsample_per_class(labels, [4, 2], seed=1)
    assert sum(labels[i] == 0 for i in a) == 4 and sum(labels[i] == 1 for i in a) == 2
    with pytest.raises(ValueError, match="asks for 11"):
        subsample_per_class(labels, [11, 2], seed=1)
