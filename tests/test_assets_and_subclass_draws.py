"""Shipped-model checksums, and ClusDiff's sub-class prompt draws."""

from __future__ import annotations

from collections import Counter

import pytest

from datamodules.subclass_draws import CLUSDIFF_PROMPT
from datamodules.generation import GenerationRequests
from experiments.assets import checksum


def test_checksum_round_trip_and_tamper_detection(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "weights.bin").write_bytes(b"\x00\x01")
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="SHA256SUMS"):
        checksum(str(tmp_path))
    checksum(str(tmp_path), write=True)
    assert set(checksum(str(tmp_path))) == {"unet/weights.bin", "model_index.json"}
    (tmp_path / "unet" / "weights.bin").write_bytes(b"\x00\x02")
    with pytest.raises(ValueError, match="unet/weights.bin: checksum differs"):
        checksum(str(tmp_path))


def _subclasses_csv(path, datamodule, extra: str = "", labels=(0, 1)):
    """Sub-class ``labels[0]`` for the first 3/4 of each class's training images, ``labels[1]``
    for the rest."""
    names = datamodule.dataset_info.class_names
    rows = ["path,label,class_name,subclass,is_exemplar"]
    for label, name in enumerate(names):
        images = [s.path for s in datamodule.index.train if s.label == label]
        for k, image in enumerate(images):
            rows.append(f"{image},{label},{name},{labels[0 if k < 0.75 * len(images) else 1]},0")
    path.write_text("\n".join(rows) + "\n" + extra)
    return path


def test_subclass_prompts_follow_the_subclass_mix(tiny_datamodule, tmp_path):
    csv_path = _subclasses_csv(tmp_path / "subclasses.csv", tiny_datamodule)
    assert tiny_datamodule.dataset_info.class_counts[0] == 12  # 9 in sub-class 0, 3 in 1
    requests = GenerationRequests(
        subclasses_csv=str(csv_path), prompt_template=CLUSDIFF_PROMPT,
        real=tiny_datamodule, per_class=400, from_real=False)
    prompts = [r.prompt for r in requests.all_requests if r.label == 0]
    counts = Counter(p.split("style ")[1].split(",")[0] for p in prompts)
    assert set(counts) == {"0", "1"}
    assert counts["0"] / 400 == pytest.approx(0.75, abs=0.07)
    assert prompts[0].startswith("A photo of garlic bread, style ")
    first = requests.all_requests[0]
    assert first.prompt == f"A photo of garlic bread, style {first.subclass}, a type of food."

    uniform = GenerationRequests(
        subclasses_csv=str(csv_path), prompt_template=CLUSDIFF_PROMPT,
        real=tiny_datamodule, per_class=400, from_real=False,
        subclass_sampling="uniform")
    counts = Counter("style 0" in r.prompt for r in uniform.all_requests if r.label == 0)
    assert counts[True] / 400 == pytest.approx(0.5, abs=0.08)


def test_named_subclasses_are_named_in_the_prompts(tiny_datamodule, tmp_path):
    """A file of sub-class names (``planted-subclasses --names``): the prompt names the word, the
    manifest row keeps it; a file mixing names and ids is refused before any work."""
    csv_path = _subclasses_csv(tmp_path / "names.csv", tiny_datamodule, labels=("miso", "shoyu"))
    requests = GenerationRequests(
        subclasses_csv=str(csv_path), prompt_template=CLUSDIFF_PROMPT,
        real=tiny_datamodule, per_class=100, from_real=False)
    first = [r for r in requests.all_requests if r.label == 0]
    assert {r.subclass for r in first} == {"miso", "shoyu"}
    assert all(r.prompt == f"A photo of garlic bread, style {r.subclass}, a type of food."
               for r in first)
    mixed = _subclasses_csv(tmp_path / "mixed.csv", tiny_datamodule, labels=(0, "shoyu"))
    with pytest.raises(ValueError, match="mixed.csv'.*expected integer ids in every row or names"):
        GenerationRequests(subclasses_csv=str(mixed), prompt_template=CLUSDIFF_PROMPT,
                           real=tiny_datamodule, per_class=2, from_real=False).all_requests


def test_subclass_rows_must_match_the_training_images(tiny_datamodule, tmp_path):
    csv_path = _subclasses_csv(tmp_path / "subclasses.csv", tiny_datamodule,
                               extra="x/pizza/999.jpg,1,pizza,0,0\n")
    requests = GenerationRequests(
        subclasses_csv=str(csv_path), prompt_template=CLUSDIFF_PROMPT,
        real=tiny_datamodule, per_class=2, from_real=False)
    with pytest.raises(ValueError, match=r"rows for 1 images outside the \d+ training images "
                                         r"\(e.g. \['pizza/999'\]\)"):
        requests.all_requests


def test_subclass_template_is_required(tiny_datamodule, tmp_path):
    with pytest.raises(ValueError, match="subclass"):
        GenerationRequests(subclasses_csv="x.csv", real=tiny_datamodule,
                           prompt_template="A photo of {class_name}.")
    with pytest.raises(ValueError, match="set subclasses_csv"):
        GenerationRequests(real=tiny_datamodule, prompt_template=CLUSDIFF_PROMPT)
