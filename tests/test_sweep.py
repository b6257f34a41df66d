"""Sweeps over tau/alpha: the offline runner drives a 2x2 grid of real trials end to end."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from conftest import tiny_data_args

from experiments.__main__ import cli_main
from experiments.sweep import _trial_args, best_trial, run_offline_sweep


def test_wandb_command_becomes_experiments_arguments():
    command = ["${env}", "${interpreter}", "-m", "experiments", "trial", "--pipeline", "p.yaml",
               "${args}"]
    assert _trial_args(command, {"tau": 0.2, "alpha": 1.0}) == [
        "trial", "--pipeline", "p.yaml", "--tau=0.2", "--alpha=1.0"]


def test_best_trial_follows_the_goal():
    rows = [{"trial": 1, "fid": 30.0}, {"trial": 2, "fid": 12.0}, {"trial": 3, "fid": 20.0}]
    assert best_trial(rows, "fid", "minimize")["trial"] == 2
    assert best_trial(rows, "fid", "maximize")["trial"] == 1


@pytest.mark.parametrize("method", ["bayes", "random"])
def test_unbounded_sweep_methods_need_max_trials(tmp_path, method):
    sweep = tmp_path / "sweep.yaml"
    spec = yaml.safe_load(open("experiments/configs/sweeps/tau_alpha_bayes.yaml"))
    sweep.write_text(yaml.safe_dump({**spec, "method": method}))
    with pytest.raises(ValueError, match=f"method '{method}' never runs out of trials"):
        run_offline_sweep(str(sweep), out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_shipped_sweep_yamls_use_the_trial_command():
    for path in ("experiments/configs/sweeps/tau_alpha_grid.yaml",
                 "experiments/configs/sweeps/tau_alpha_bayes.yaml"):
        spec = yaml.safe_load(open(path))
        assert spec["command"][-1] == "${args}" and "trial" in spec["command"]
        assert set(spec["parameters"]) == {"tau", "alpha"}


def test_offline_grid_sweep_runs_2x2_trials(tmp_path, embedded_cache, tiny_datamodule):
    from lightning_modules.diffusion.components import (
        TinyDiffusionConfig,
        build_tiny_components,
        save_pipeline,
    )

    model = save_pipeline(build_tiny_components(
        TinyDiffusionConfig(sample_size=16, latent=False, block_out_channels=(4, 8))),
        tmp_path / "model")
    names = tiny_datamodule.dataset_info.class_names
    negatives = tmp_path / "negatives.csv"
    negatives.write_text("class_name,negative_class_name,similarity\n" + "".join(
        f"{a},{names[(i + 1) % len(names)]},0.5\n" for i, a in enumerate(names)))
    data = tiny_data_args(embedded_cache, "data.init_args.real.init_args")
    fast = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]
    sweep = yaml.safe_load(open("experiments/configs/sweeps/tau_alpha_grid.yaml"))
    sweep["parameters"] = {"tau": {"values": [0.2, 0.8]}, "alpha": {"values": [0.5, 1.0]}}
    sweep["command"] = sweep["command"][:-3] + [
        "--run_root", str(tmp_path / "trials"),
        "--params", json.dumps({"model": str(model), "negatives": str(negatives),
                                "val_per_class": 1}),
        "--overrides", json.dumps(data + fast),
        "--stage_overrides", json.dumps({"generate": [
            "--data.init_args.per_class=1", "--model.init_args.num_inference_steps=2"]}),
        "${args}"]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))

    rows = cli_main(["sweep", "--sweep", str(path), "--out_dir", str(tmp_path / "out")])
    assert sorted((r["tau"], r["alpha"]) for r in rows) == [(0.2, 0.5), (0.2, 1.0), (0.8, 0.5),
                                                           (0.8, 1.0)]
    assert all("test/acc_overall" in r and "val/acc_overall" in r for r in rows)
    classifier = tmp_path / "trials" / "tau0.8_alpha1" / "classifier"
    tested = csv.DictReader(open(classifier / "per_class_accuracy_test.csv"))
    assert {int(r["total"]) for r in tested} == {3}  # of 4 test images per class, 1 held out
    table = list(csv.DictReader(open(tmp_path / "out" / "trials.csv")))
    assert len(table) == 4
    manifest = tmp_path / "trials" / "tau0.2_alpha0.5" / "synthetic" / "manifest.jsonl"
    record = json.loads(manifest.read_text().splitlines()[0])
    assert (record["params"]["tau"], record["params"]["alpha"]) == (0.2, 0.5)
