"""ClusDiff clustering: the preference bisection cap, edge cases, ARI, and the predict stage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lightning_modules.clustering import (
    adjusted_rand_per_class,
    cluster_class,
    cluster_classes,
    draw_subclasses,
)

CLUSTER_YAML = "experiments/configs/cluster.yaml"
EMBEDDED = ["--data", "experiments/configs/data/embedded.yaml"]


def _blobs(num_clusters: int, per_cluster: int, spread: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_clusters, 16)) * 5.0
    return np.concatenate([c + spread * rng.normal(size=(per_cluster, 16)) for c in centers])


def test_bisection_caps_subclasses() -> None:
    features = _blobs(num_clusters=12, per_cluster=6, spread=1.0)
    uncapped = cluster_class(features, max_subclasses=100)
    assert uncapped.num_subclasses > 3 and uncapped.runs == 1  # the median gives more than 3
    capped = cluster_class(features, max_subclasses=3)
    assert capped.converged and 1 <= capped.num_subclasses <= 3
    assert capped.preference < uncapped.preference  # lowered, not truncated
    assert set(capped.labels.tolist()) == set(range(capped.num_subclasses))
    assert capped.runs > 1
    # Every exemplar belongs to its own sub-class.
    assert (capped.labels[capped.exemplars] == np.arange(capped.num_subclasses)).all()


def test_single_image_class_is_its_own_subclass() -> None:
    result = cluster_class(np.ones((1, 8)), max_subclasses=10)
    assert result.num_subclasses == 1 and result.labels.tolist() == [0]
    assert result.exemplars.tolist() == [0] and result.converged


def test_argument_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="max_subclasses"):
        cluster_class(np.ones((3, 2)), max_subclasses=0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        cluster_class(np.ones(3))


def test_ari_is_one_on_well_separated_planted_clusters() -> None:
    features = _blobs(num_clusters=3, per_cluster=10, spread=0.05)
    result = cluster_class(features, max_subclasses=10)
    planted = [f"mode{i // 10}" for i in range(30)]
    labels = np.zeros(30, int)
    report = adjusted_rand_per_class(["dish"], labels, result.labels, planted)
    assert report.per_class == {"dish": pytest.approx(1.0)} and report.mean == pytest.approx(1.0)


def test_cluster_classes_clusters_each_class_on_its_own() -> None:
    """Two classes, interleaved: 3 and 2 separated blobs; ids restart at 0 within each class."""
    first, second = _blobs(3, 8, 0.05, seed=1), _blobs(2, 8, 0.05, seed=2)
    features = np.empty((40, 16))
    labels = np.array([0, 1] * 16 + [0] * 8)
    features[labels == 0], features[labels == 1] = first, second
    result = cluster_classes(features, labels, ["a", "b"], max_subclasses=10)
    assert [row["num_subclasses"] for row in result.summary] == [3, 2]
    assert [row["subclass_sizes"] for row in result.summary] == ["8;8;8", "8;8"]
    assert set(result.subclass[labels == 1].tolist()) == {0, 1}
    assert result.exemplar.sum() == 5 and result.summary[1]["class_name"] == "b"


def test_ari_skips_degenerate_classes() -> None:
    labels = np.array([0, 1, 1, 2, 2])
    planted = ["a", "a", "a", "x", "y"]
    report = adjusted_rand_per_class(["one", "same", "mixed"], labels, np.zeros(5, int), planted)
    assert set(report.skipped) == {"one", "same"} and list(report.per_class) == ["mixed"]


def test_draw_subclasses_follows_sizes_or_uniform() -> None:
    ids = draw_subclasses([30, 10], num=4000, seed=0)
    assert abs((ids == 0).mean() - 0.75) < 0.03
    ids = draw_subclasses([30, 10], num=4000, seed=0, uniform=True)
    assert abs((ids == 0).mean() - 0.5) < 0.03
    with pytest.raises(ValueError, match="sizes"):
        draw_subclasses([3, 0], num=1)


@pytest.fixture()
def resnet_weights(tmp_path) -> Path:
    """A random torchvision ResNet-18 state dict saved with safetensors."""
    import torch
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    with torch.random.fork_rng():
        torch.manual_seed(0)
        weights = tmp_path / "resnet18.safetensors"
        save_file(resnet18(num_classes=10).state_dict(), str(weights))
    return weights


def _predict(config: str, run_dir: Path, weights: Path, extra: list[str]) -> None:
    from experiments.__main__ import cli_main

    cli_main([
        "predict", "--config", config, f"--trainer.default_root_dir={run_dir}",
        f"--model.init_args.weights_path={weights}", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks.init_args.max_subclasses=2", *extra,
    ])


def test_cluster_predict_stage_end_to_end_and_under_ddp(
    embedded_cache, resnet_weights, tmp_path
) -> None:
    from conftest import tiny_data_args
    from safetensors.torch import load_file

    run_dir = tmp_path / "cluster"
    _predict(CLUSTER_YAML, run_dir, resnet_weights, [*EMBEDDED, *tiny_data_args(embedded_cache)])
    with open(run_dir / "subclasses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "class_name", "subclass", "is_exemplar"]
    images = (run_dir / "images.txt").read_text().split()
    assert [r["path"] for r in rows] == images and all(Path(p).is_file() for p in images)
    cache = load_file(str(run_dir / "features.safetensors"))
    assert cache["features"].shape == (len(rows), 512)
    assert cache["indices"].tolist() == list(range(len(rows)))
    assert cache["labels"].tolist() == [int(r["label"]) for r in rows]
    for c in {r["label"] for r in rows}:
        members = [r for r in rows if r["label"] == c]
        k = len({r["subclass"] for r in members})
        assert 1 <= k <= 2 and sum(int(r["is_exemplar"]) for r in members) == k
    with open(run_dir / "subclass_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 10 and {"ari", "ari_note", "converged"} <= set(summary[0])
    totals = json.loads((run_dir / "clustering.json").read_text())
    assert totals["num_images"] == len(rows) and "ari_mean" in totals
    assert len(totals["ari_per_class"]) + len(totals["ari_skipped"]) == 10

    # Two processes (gloo, forked): sharded features, one clustering, the same files.
    ddp_dir = tmp_path / "cluster_ddp"
    ddp = ["--trainer.strategy=ddp_fork", "--trainer.devices=2"]
    _predict(CLUSTER_YAML, ddp_dir, resnet_weights,
             [*EMBEDDED, *tiny_data_args(embedded_cache), *ddp])
    assert (ddp_dir / "subclasses.csv").read_text() == (run_dir / "subclasses.csv").read_text()
    assert not list(ddp_dir.glob(".features-rank*"))  # shards merged and removed


def test_cluster_config_takes_the_food101_lt_data_file(tmp_path, capsys) -> None:
    """The one clustering config serves a real dataset by its data file."""
    from experiments.__main__ import cli_main

    with pytest.raises(SystemExit):
        cli_main(["predict", "--config", CLUSTER_YAML, "--data",
                  "experiments/configs/data/food101_lt.yaml", "--model.init_args.weights_path=x",
                  f"--trainer.default_root_dir={tmp_path}", "--print_config"])
    out = capsys.readouterr().out
    assert "datamodules.Food101LT" in out and "SubclassWriter" in out


def test_planted_subclasses_tool_writes_the_planted_sub_modes(embedded_cache, tmp_path) -> None:
    """The oracle clustering: one sub-class per planted sub-mode, read back by the fine-tune's
    reader for exactly the training images; a dataset without planted truth is refused."""
    from conftest import tiny_data_args

    from datamodules.diffusion_data import image_key, read_subclasses
    from datamodules.embedded.build import read_planted_submodes
    from experiments.__main__ import cli_main

    out = tmp_path / "planted" / "subclasses.csv"
    cli_main(["planted-subclasses", *EMBEDDED, *tiny_data_args(embedded_cache),
              f"--output={out}"])
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "class_name", "subclass", "is_exemplar"]
    planted = read_planted_submodes(Path(rows[0]["path"]).parents[2])
    for name in {r["class_name"] for r in rows}:
        members = [r for r in rows if r["class_name"] == name]
        modes = sorted({planted[image_key(r["path"])] for r in members})
        for r in members:  # ids follow the sorted sub-mode names, one id per sub-mode
            assert int(r["subclass"]) == modes.index(planted[image_key(r["path"])])
    assert len(read_subclasses(out)) == len(rows) == len({r["path"] for r in rows})
    named = tmp_path / "planted" / "names.csv"  # --names: the sub-mode's word in every row
    cli_main(["planted-subclasses", *EMBEDDED, *tiny_data_args(embedded_cache),
              f"--output={named}", "--names=true"])
    assert read_subclasses(named) == {k: planted[k] for k in read_subclasses(out)}
    with pytest.raises(ValueError, match="Food101LT has no planted sub-modes"):
        cli_main(["planted-subclasses", "--data", "experiments/configs/data/food101_lt.yaml",
                  "--data.init_args.root=/nonexistent", f"--output={tmp_path / 'x.csv'}"])
