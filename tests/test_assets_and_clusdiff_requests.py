"""Shipped-model checksums, and ClusDiff's sub-class prompt draws."""

from __future__ import annotations

from collections import Counter

import pytest

from datamodules.clusdiff_requests import SubclassGenerationRequests
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


def _subclasses_csv(path, class_names):
    rows = ["path,label,class_name,subclass,is_exemplar"]
    for label, name in enumerate(class_names):
        for k in range(4):  # sub-class 0: 3 images, sub-class 1: 1 image
            rows.append(f"x/{name}/{k}.jpg,{label},{name},{0 if k < 3 else 1},0")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_subclass_prompts_follow_the_subclass_mix(tiny_datamodule, tmp_path):
    names = tiny_datamodule.dataset_info.class_names
    csv_path = _subclasses_csv(tmp_path / "subclasses.csv", names)
    requests = SubclassGenerationRequests(
        subclasses_csv=str(csv_path), real=tiny_datamodule, per_class=400, from_real=False)
    prompts = [r.prompt for r in requests.all_requests if r.label == 0]
    counts = Counter(p.split("style ")[1].split(",")[0] for p in prompts)
    assert set(counts) == {"0", "1"}
    assert counts["0"] / 400 == pytest.approx(0.75, abs=0.07)
    assert prompts[0].startswith("A photo of garlic bread, style ")

    uniform = SubclassGenerationRequests(
        subclasses_csv=str(csv_path), real=tiny_datamodule, per_class=400, from_real=False,
        subclass_sampling="uniform")
    counts = Counter("style 0" in r.prompt for r in uniform.all_requests if r.label == 0)
    assert counts[True] / 400 == pytest.approx(0.5, abs=0.08)


def test_subclass_template_is_required(tiny_datamodule, tmp_path):
    with pytest.raises(ValueError, match="subclass"):
        SubclassGenerationRequests(subclasses_csv="x.csv", real=tiny_datamodule,
                                   prompt_template="A photo of {class_name}.")
