"""The ablation pipeline of both papers, end to end, on a dataset of one's own in Food-101's
layout (no planted truth) with a tiny local Stable Diffusion: the paper's stage configs (sd14/),
the dataset given by one data file, every row of the table produced."""

from __future__ import annotations

import json
from pathlib import Path

from test_datasets import make_food101

from experiments.__main__ import cli_main

ABLATIONS = "experiments/configs/pipelines/ablations.yaml"
GENERATIONS = ("gen_sd", "gen_cads", "reference_set", "gen_disc_ds", "gen_tau02", "gen_tau05",
               "gen_tau08", "gen_clusdiff", "gen_no_cluster")
SMALL_GENERATION = ["--model.init_args.acceleration.compile=false",
                    "--model.init_args.num_inference_steps=2", "--data.init_args.per_class=1",
                    "--data.init_args.image_size=32", "--data.init_args.num_workers=0"]
SMALL_FINETUNE = ["--trainer.max_steps=2", "--data.init_args.resolution=32",
                  "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
                  "--trainer.callbacks.init_args.per_class=1",
                  "--trainer.callbacks.init_args.max_classes=1",
                  "--trainer.callbacks.init_args.num_inference_steps=2"]


def _data_file(root: Path, path: Path) -> Path:
    """The user's one data file: root, split profile, head count, image size."""
    path.write_text(
        "class_path: datamodules.Food101LT\n"
        "init_args:\n"
        f"  root: {root}\n"
        "  long_tail: {n_max: 6, imbalance_factor: 3, seed: 0}\n"
        "  num_head_classes: 1\n"
        "  image_size: 16\n"
        "  batch_size: 4\n"
        "  num_workers: 0\n")
    return path


def test_ablation_pipeline_on_a_dataset_in_food101_layout(tmp_path):
    from lightning_modules.diffusion import (
        TinyDiffusionConfig,
        build_tiny_components,
        save_pipeline,
    )

    sd = save_pipeline(build_tiny_components(TinyDiffusionConfig()), tmp_path / "sd-v1-4")
    cli_main(["checksum", "--directory", str(sd), "--write", "true"])
    data = _data_file(make_food101(tmp_path / "food"), tmp_path / "mine.yaml")
    params = {"dataset": "mine", "paper": "food101_lt", "setting": "sd14", "data": str(data),
              "mixup": "mixup_random", "model": str(sd), "ros_epochs": 1,
              "per_class_judged": 1, "reference_per_class": 1}
    stage_overrides = {
        **{name: SMALL_GENERATION for name in GENERATIONS},
        "finetune_clusdiff": SMALL_FINETUNE, "finetune_no_cluster": SMALL_FINETUNE,
        "negatives": ["--image_size=16", "--resize_size=16", "--batch_size=4", "--device=cpu"],
    }
    run = tmp_path / "ablations"
    cli_main(["pipeline", "--config", ABLATIONS, f"--run_dir={run}", "--seeds=[0]",
              f"--params={json.dumps(params)}",
              '--overrides=["--trainer.accelerator=cpu", "--trainer.precision=32-true", '
              '"--trainer.enable_progress_bar=false"]',
              '--classifier_overrides=["--trainer.max_epochs=1", '
              '"--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]',
              f"--stage_overrides={json.dumps(stage_overrides)}"])

    report = (run / "results.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ")][1:]  # no header
    assert len(table) == 12 and all("| 1 | 1 |" in line for line in table), report
    assert "not run" not in report
    # No planted truth: the clustering's ARI and the recovered pairs are absent, not invented.
    assert "mean adjusted Rand index" in report and "not measured" in report
    subclasses = (run / "cluster" / "subclasses.csv").read_text().splitlines()
    assert len(subclasses) == 1 + 11  # header + every long-tailed training image (6 / 3 / 2)
