"""Stage 1b (confusing-class selection): closed forms and the files it writes."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from datamodules.generation import read_negatives
from experiments.negatives import (
    NegativesResult,
    class_mean_features,
    cosine_similarity_matrix,
    pick_negatives,
    recovered,
    write_outputs,
)

NAMES = ["garlic_bread", "pizza", "french_toast", "ramen"]


def test_class_means_and_similarity():
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2, 3])
    means = class_mean_features(features, labels, NAMES)
    expected_means = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    assert torch.equal(means, expected_means.double())
    sim = cosine_similarity_matrix(means)
    s = 2**-0.5
    expected = torch.tensor(
        [[1, 0, s, -1], [0, 1, s, 0], [s, s, 1, -s], [-1, 0, -s, 1]], dtype=torch.float64
    )
    torch.testing.assert_close(sim, expected)
    # argmax over the OTHER classes (the diagonal is never picked); ties -> the first
    assert pick_negatives(sim) == [2, 2, 0, 1]


def test_empty_class_is_an_error():
    with pytest.raises(ValueError, match=r"no image of classes \['ramen'\]"):
        class_mean_features(torch.ones(3, 2), torch.tensor([0, 1, 2]), NAMES)


def test_pair_recovery_counts_either_direction():
    negatives = {"garlic_bread": "pizza", "french_toast": "garlic_bread", "ramen": "pizza",
                 "pizza": "ramen"}
    pairs = [("garlic_bread", "french_toast"), ("ramen", "pho")]
    assert recovered(negatives, pairs) == [("garlic_bread", "french_toast")]


def test_outputs_round_trip_into_stage_2(tmp_path):
    sim = [[1.0, 0.2, 0.9, 0.1], [0.2, 1.0, 0.3, 0.4], [0.9, 0.3, 1.0, 0.0],
           [0.1, 0.4, 0.0, 1.0]]
    picks = pick_negatives(torch.tensor(sim))
    result = NegativesResult(NAMES, {n: NAMES[j] for n, j in zip(NAMES, picks)}, sim)
    write_outputs(tmp_path, result)
    assert read_negatives(tmp_path / "negatives.csv", NAMES) == {
        "garlic_bread": "french_toast", "pizza": "ramen", "french_toast": "garlic_bread",
        "ramen": "pizza",
    }
    with open(tmp_path / "negatives.csv") as f:
        assert next(csv.reader(f)) == ["class_name", "negative_class_name", "similarity"]
    with open(tmp_path / "similarity.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["class_name", *NAMES] and float(rows[1][3]) == 0.9
    assert (tmp_path / "similarity.png").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["negatives"] == result.negatives


@pytest.mark.parametrize("extra, match", [
    ("pizza,ramen,0.3\n", r"negatives.csv:6: class_name 'pizza' repeats line 3"),
    ("", None),
])
def test_repeated_or_self_negative_rows_are_named(tmp_path, extra, match):
    path = tmp_path / "negatives.csv"
    body = "".join(f"{n},{NAMES[(i + 1) % 4]},0.5\n" for i, n in enumerate(NAMES))
    path.write_text("class_name,negative_class_name,similarity\n" + body + extra)
    if match is None:  # a class as its own negative
        path.write_text(path.read_text().replace("ramen,garlic_bread", "ramen,ramen"))
        match = r"negatives.csv:5: class 'ramen' is its own negative"
    with pytest.raises(ValueError, match=match):
        read_negatives(path, NAMES)


def test_features_are_taken_at_the_size_the_classifier_was_trained_at(tiny_datamodule):
    """The embedded classifier sees 16 px images: its negatives' features are taken at 16 px."""
    from experiments.negatives import eval_sizes

    assert tiny_datamodule.image_size == 16
    assert eval_sizes(tiny_datamodule, None, None) == (16, tiny_datamodule.resize_size)
    assert eval_sizes(None, None, None) == (224, 256)
    assert eval_sizes(tiny_datamodule, 32, 40) == (32, 40)
