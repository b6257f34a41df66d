"""The generation request list: counts per class, seeds, prompts, negatives, source images."""

from __future__ import annotations

import pytest

from datamodules.generation import (
    DEFAULT_PROMPT,
    GenerationRequests,
    collate_requests,
    read_negatives,
    render_prompt,
)


def test_fill_up_to_largest_class(tiny_datamodule):
    dm = GenerationRequests(tiny_datamodule, image_size=16)
    counts = dm.dataset_info.class_counts
    assert dm.counts_to_generate() == [max(counts) - c for c in counts]
    per_class = {}
    for r in dm.all_requests:
        per_class[r.label] = per_class.get(r.label, 0) + 1
    assert [per_class.get(c, 0) + counts[c] for c in range(len(counts))] == [max(counts)] * 10


def test_fixed_counts_and_target(tiny_datamodule):
    assert GenerationRequests(tiny_datamodule, per_class=3).counts_to_generate() == [3] * 10
    counts = tiny_datamodule.dataset_info.class_counts
    target = GenerationRequests(tiny_datamodule, target=5).counts_to_generate()
    assert target == [max(5 - c, 0) for c in counts]


def test_seeds_paths_prompts_and_sources(tiny_datamodule):
    dm = GenerationRequests(tiny_datamodule, per_class=3, base_seed=100)
    requests = dm.all_requests
    assert [r.index for r in requests] == list(range(30))
    assert [r.seed for r in requests] == list(range(100, 130))
    assert len({r.relative_path for r in requests}) == 30
    assert requests[0].relative_path == "images/garlic_bread/00000100.png"
    assert requests[0].prompt == "A photo of garlic bread, a type of food."
    assert requests[0].negative_prompt is None
    train = {}
    for sample in tiny_datamodule.index.train:
        train.setdefault(sample.label, []).append(sample.path)
    for label in range(10):
        got = [r.source_image for r in requests if r.label == label]
        expected = [train[label][k % len(train[label])] for k in range(3)]
        assert got == expected  # the class's real images, cycled
    assert all(
        r.source_image is None
        for r in GenerationRequests(tiny_datamodule, per_class=1, from_real=False).all_requests
    )


def test_negatives_csv(tiny_datamodule, tmp_path):
    names = tiny_datamodule.dataset_info.class_names
    path = tmp_path / "negatives.csv"
    rows = [f"{n},{names[(i + 1) % len(names)]},0.5" for i, n in enumerate(names)]
    path.write_text("class_name,negative_class_name,similarity\n" + "\n".join(rows) + "\n")
    dm = GenerationRequests(tiny_datamodule, per_class=1, negatives_csv=str(path))
    first = dm.all_requests[0]
    assert first.negative_class_name == names[1]
    assert first.negative_prompt == render_prompt(DEFAULT_PROMPT, names[1])
    path.write_text("class_name,negative_class_name,similarity\n" + "\n".join(rows[:-1]) + "\n")
    with pytest.raises(ValueError, match="no negative class for"):
        read_negatives(path, names)
    with pytest.raises(FileNotFoundError, match="run stage 1"):
        read_negatives(tmp_path / "missing.csv", names)


def test_skip_and_batches(tiny_datamodule):
    dm = GenerationRequests(tiny_datamodule, per_class=1, image_size=32, batch_size=4)
    dm.setup("predict")
    dm.skip({0, 3, 4, 5, 6, 7})
    assert [r.index for r in dm.pending] == [1, 2, 8, 9]
    batches = [[r.index for r in b["requests"]] for b in dm.predict_dataloader()]
    assert batches == [[0, 1, 2, 3], [8, 9]]  # the fixed batches that hold a missing image
    batch = next(iter(dm.predict_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32)
    assert 0.0 <= batch["images"].min() and batch["images"].max() <= 1.0
    noise = collate_requests([(r, None) for r in dm.pending[:2]])
    assert noise["images"] is None


def test_prompt_hook(tiny_datamodule):
    class StylePrompts(GenerationRequests):
        def class_subclasses(self, label, class_name, count):
            return list(range(count))

        def class_prompts(self, label, class_name, subclasses):
            return [f"a photo of {class_name}, style {k}" for k in subclasses]

    requests = StylePrompts(tiny_datamodule, per_class=2).all_requests
    assert [r.prompt for r in requests[:2]] == [
        "a photo of garlic_bread, style 0", "a photo of garlic_bread, style 1"
    ]
    assert [r.subclass for r in requests[:2]] == [0, 1]


def test_errors_name_the_argument(tiny_datamodule):
    with pytest.raises(ValueError, match="per_class must be >= 0"):
        GenerationRequests(tiny_datamodule, per_class=-1)
    with pytest.raises(ValueError, match="prompt_template must contain"):
        GenerationRequests(tiny_datamodule, prompt_template="food")
