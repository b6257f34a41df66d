"""Every shipped generation YAML, run in-process with tiny overrides (2 steps, 1 image/class).

Embedded: stage 1a (reference set) -> stage 1b (negatives) -> stage 2 (DiSC-DS), then each
sampler variant. Food101-LT and VFN-LT: the same stages from their own configs with the real
dataset root pointed at the tiny embedded dataset (Food-101's layout; VFN-LT gets split lists
written for it) and the SD v1.4 path at a saved tiny pipeline.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import TINY_SETTINGS

from datamodules.manifest import read_manifest
from experiments import tools
from experiments.__main__ import cli_main

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
SAMPLERS = ["cfg", "cads", "ccfg", "disc_ds", "disc_ds_fixed_tau"]
FAST = ["--model.init_args.num_inference_steps=2", "--trainer.enable_progress_bar=false"]


@pytest.fixture(autouse=True)
def _negatives_tool(monkeypatch):
    """Register the tool as experiments/tools.py will (harmless once it is there)."""
    monkeypatch.setitem(tools.TOOLS, "negatives", "experiments.negatives:select_negatives")


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> str:
    from torchvision.models import resnet18

    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(resnet18(num_classes=1000).state_dict(), path)
    return str(path)


def _embedded(cache: str, prefix: str = "--data.init_args.real.init_args") -> list[str]:
    return [f"{prefix}.cache_dir={cache}"] + [
        f"{prefix}.settings.{k}={v}" for k, v in TINY_SETTINGS.items()
    ]


def _predict(config: str, out: Path, *args: str) -> list:
    cli_main(["predict", "--config", str(CONFIGS / config), *FAST,
              f"--trainer.default_root_dir={out}", "--data.init_args.per_class=1", *args])
    return read_manifest(out)


def test_embedded_stage1_then_stage2(embedded_cache, resnet_weights, tmp_path):
    reference = _predict(
        "embedded/generate.yaml", tmp_path / "ref", *_embedded(embedded_cache),
        "--config", str(CONFIGS / "variants/reference_set.yaml"),
    )
    assert len(reference) == 10 and {s.row.sampler for s in reference} == {"cads"}

    result = cli_main([
        "negatives", f"--data={CONFIGS / 'data' / 'embedded.yaml'}",
        f"--manifest={tmp_path / 'ref'}", f"--weights_path={resnet_weights}",
        f"--output_dir={tmp_path / 'neg'}", *_embedded(embedded_cache, "--data.init_args"),
    ])
    assert result.planted_pairs == [("garlic_bread", "french_toast"), ("ramen", "pho")]
    assert set(result.recovered_pairs) <= set(result.planted_pairs)
    for name in ("negatives.csv", "similarity.csv", "similarity.png", "summary.json"):
        assert (tmp_path / "neg" / name).is_file()

    synthetic = _predict(
        "embedded/generate.yaml", tmp_path / "disc_ds", *_embedded(embedded_cache),
        f"--data.init_args.negatives_csv={tmp_path / 'neg' / 'negatives.csv'}",
    )
    assert [s.row.negative_class_name for s in synthetic] == [
        result.negatives[s.row.class_name] for s in synthetic
    ]
    assert {s.row.sampler for s in synthetic} == {"disc_ds"}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_variants(sampler, embedded_cache, tiny_datamodule, tmp_path):
    names = tiny_datamodule.dataset_info.class_names
    negatives = tmp_path / "negatives.csv"
    with open(negatives, "w", newline="") as f:
        rows = [[n, names[(i + 1) % len(names)], 0.5] for i, n in enumerate(names)]
        csv.writer(f).writerows([["class_name", "negative_class_name", "similarity"], *rows])
    synthetic = _predict(
        "embedded/generate.yaml", tmp_path / "out", *_embedded(embedded_cache),
        f"--data.init_args.negatives_csv={negatives}",
        f"--model.init_args.guidance.variant={sampler}",
    )
    assert len(synthetic) == 10 and {s.row.sampler for s in synthetic} == {sampler}


def _vfn_lists(root: Path, out: Path) -> dict[str, str]:
    """VFN-LT split lists (``class/file`` with extension) for the embedded Food-101 layout."""
    def write(split: str) -> str:
        lines = (root / "meta" / split).read_text().split()
        path = out / f"vfn_{split}"
        path.write_text("\n".join(f"{line}.jpg" for line in lines) + "\n")
        return str(path)  # absolute: VFN-LT joins it to the root

    return {"train_list": write("train_lt.txt"), "test_list": write("test.txt"),
            "classes_file": "meta/classes.txt", "images_dir": "images"}


@pytest.mark.parametrize("dataset", ["food101_lt", "vfn_lt"])
def test_paper_dataset_disc_ds_configs(dataset, embedded_cache, resnet_weights, tmp_path):
    """Stage 1a -> 1b -> 2 from the dataset's shipped configs on the tiny embedded images."""
    from datamodules.embedded import EmbeddedSettings
    from datamodules.embedded.build import dataset_dir
    from lightning_modules.diffusion import (
        TinyDiffusionConfig,
        build_tiny_components,
        save_pipeline,
    )

    sd = save_pipeline(build_tiny_components(TinyDiffusionConfig()), tmp_path / "sd-v1-4")
    root = dataset_dir(embedded_cache, EmbeddedSettings(**TINY_SETTINGS))
    layout = ({"train_split": "meta/train_lt.txt"} if dataset == "food101_lt"  # wins over long_tail
              else _vfn_lists(root, tmp_path))

    def real(prefix: str) -> list[str]:
        settings = {"root": root, "num_head_classes": 3, **layout}
        return [f"{prefix}.{key}={value}" for key, value in settings.items()]

    cpu = ["--trainer.accelerator=cpu", "--trainer.precision=32-true",
           f"--model.init_args.pretrained_model_name_or_path={sd}",
           "--model.init_args.acceleration.compile=false",  # minutes on 2 CPU cores, no gain
           "--data.init_args.image_size=32", "--data.init_args.num_workers=0",
           f"--data.init_args.real={CONFIGS / 'data' / dataset}.yaml",
           *real("--data.init_args.real.init_args")]
    reference = _predict("sd14/generate.yaml", tmp_path / "ref", *cpu,
                         "--config", str(CONFIGS / "variants/reference_set.yaml"))
    assert len(reference) == 10 and reference[0].row.model == str(sd)
    result = cli_main([
        "negatives",
        f"--data={CONFIGS / 'data' / dataset}.yaml",
        f"--manifest={tmp_path / 'ref'}", f"--weights_path={resnet_weights}",
        f"--output_dir={tmp_path / 'neg'}", "--image_size=32", "--resize_size=32",
        "--device=cpu", *real("--data.init_args"),
    ])
    assert len(result.negatives) == 10 and result.planted_pairs is None
    synthetic = _predict(
        "sd14/generate.yaml", tmp_path / "disc_ds", *cpu,
        f"--data.init_args.negatives_csv={tmp_path / 'neg' / 'negatives.csv'}",
    )
    assert len(synthetic) == 10 and {s.row.sampler for s in synthetic} == {"disc_ds"}
