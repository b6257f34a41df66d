"""The pictures of a finished run render from the files a run leaves behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.plots import read_square_csv, render_plots
from lightning_modules.metric_features import ResNetFeatures


def _fake_run(run_dir: Path, names: list[str]) -> None:
    """The CSVs of a finished run: classifier per-class accuracy, similarity matrix, fid.csv."""
    run_dir.mkdir(parents=True)
    with open(run_dir / "per_class_accuracy_test.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_index", "class_name", "is_head", "train_count", "correct",
                         "total", "accuracy"])
        for i, name in enumerate(names):
            count, correct = 12 - i, 4 - i % 4
            writer.writerow([i, name, i < 3, count, correct, 4, f"{100 * correct / 4:.4f}"])
    (run_dir / "negatives").mkdir()
    with open(run_dir / "negatives" / "similarity.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_name", *names])
        for i, name in enumerate(names):
            sim = [1.0 if i == j else 0.9 if {i, j} == {1, 4} else 0.1 * ((i + j) % 5)
                   for j in range(len(names))]
            writer.writerow([name, *sim])
    for name, sampler, neg in (("synthetic_cfg", "cfg", None), ("synthetic_disc", "disc_ds", -0.3)):
        (run_dir / name).mkdir()
        summary = {"sampler": sampler, "steps": 3, "images": 2}
        for field, value in (("coef_pos", 2.0), ("coef_neg", neg)):
            for q in ("median", "p10", "p90"):
                summary[f"{field}_{q}"] = None if value is None else [value] * 3
        (run_dir / name / "guidance_summary.json").write_text(json.dumps(summary))
    (run_dir / "eval").mkdir()
    with open(run_dir / "eval" / "fid.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_index", "class_name", "num_real", "num_synthetic", "fid_resnet18",
                         "is_resnet18"])
        writer.writerow([-1, "all", 40, 30, 1.5, 2.0])
        for i, name in enumerate(names):
            writer.writerow([i, name, 4, 3, 1.0 + 0.1 * i, 1.2])


def _assert_pngs(paths: list[Path], expected: set[str]) -> None:
    assert {p.name for p in paths} == expected
    for path in paths:
        assert path.parent.name == "plots" and path.read_bytes()[:4] == b"\x89PNG"
        assert path.stat().st_size > 1000


def test_tables_render_with_only_a_run_dir(tiny_datamodule, tmp_path):
    from jsonargparse import CLI

    run = tmp_path / "run"
    _fake_run(run, tiny_datamodule.index.class_names)
    paths = CLI(render_plots, args=["--run_dir", str(run)], as_positional=False)
    _assert_pngs(paths, {"per_class_accuracy_test.png", "similarity_negatives.png",
                         "fid_eval.png", "guidance_coefficients.png"})


def test_grids_and_tsne_render_from_data_and_a_manifest(
    tiny_datamodule, synthetic_manifest, tmp_path
):
    names = tiny_datamodule.index.class_names
    run = tmp_path / "run"
    _fake_run(run, names)
    paths = render_plots(str(run), data=tiny_datamodule, manifest=str(synthetic_manifest),
                         extractor=ResNetFeatures(num_classes=10), num_pairs=1, per_class=2)
    pair = sorted((names[1], names[4]))  # the most similar pair of similarity.csv
    _assert_pngs(paths, {"per_class_accuracy_test.png", "similarity_negatives.png",
                         "fid_eval.png", "guidance_coefficients.png",
                         "samples_real_vs_synthetic.png",
                         f"tsne_{pair[0]}_vs_{pair[1]}.png"})


def test_square_csv_must_be_square(tmp_path):
    path = tmp_path / "similarity.csv"
    path.write_text("class_name,a,b\na,1,0.5\n")
    with pytest.raises(ValueError, match="square"):
        read_square_csv(path)
