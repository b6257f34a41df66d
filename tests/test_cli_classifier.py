"""The classifier through the real CLI: fit, test, resume after a crash, config errors."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_data_args

from experiments.__main__ import cli_main

CONFIG = "experiments/configs/embedded/classifier_ce.yaml"


class CrashAtSecondEpoch(L.Callback):
    """Stands in for a kill: dies at the start of epoch 1, after epoch 0's checkpoint."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated kill")


class FallingAccuracy(L.Callback):
    """Replaces the monitored accuracy by one that falls every epoch: epoch 0 is the best."""

    def on_validation_end(self, trainer, pl_module):
        trainer.callback_metrics["val/acc_overall"] = torch.tensor(90.0 - trainer.current_epoch)


def _args(run_dir: Path, cache: str, *extra: str) -> list[str]:
    return [
        "--config", CONFIG,
        f"--trainer.default_root_dir={run_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *tiny_data_args(cache),
        *extra,
    ]


def test_fit_then_test_reports_three_accuracies_and_per_class_csv(tmp_path, embedded_cache):
    run = tmp_path / "run"
    fit = cli_main(["fit", *_args(run, embedded_cache, "--trainer.max_epochs=1",
                                  "--trainer.limit_train_batches=2")])
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert fit.model.hparams["dataset_info"]["class_names"][0] == "garlic_bread"

    tested = cli_main(["test", *_args(run, embedded_cache),
                       f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    metrics = tested.trainer.callback_metrics
    for key in ("test/acc_overall", "test/acc_head", "test/acc_tail"):
        assert 0.0 <= float(metrics[key]) <= 100.0
    rows = list(csv.DictReader(open(run / "per_class_accuracy_test.csv")))
    assert len(rows) == 10
    assert sum(int(r["total"]) for r in rows) == 40
    overall = 100 * sum(int(r["correct"]) for r in rows) / 40
    assert float(metrics["test/acc_overall"]) == pytest.approx(overall, abs=1e-4)


def test_last_checkpoint_is_the_final_epoch_not_the_best(tmp_path, embedded_cache):
    """`--ckpt_path last` (resume, and what the pipelines test) must be the latest epoch."""
    run = tmp_path / "run"
    cli_main(["fit", *_args(run, embedded_cache, "--trainer.max_epochs=3",
                            "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
                            "--trainer.callbacks+=test_cli_classifier.FallingAccuracy")])
    checkpoints = run / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2
    # one checkpoint file per run: last.ckpt links to it
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "latest.ckpt"]
    assert (checkpoints / "last.ckpt").is_symlink()

    # a fresh fit into the same run directory replaces last.ckpt (no stale last.ckpt beside a
    # last-v1.ckpt that explicit paths to last.ckpt would miss)
    cli_main(["fit", *_args(run, embedded_cache, "--trainer.max_epochs=2",
                            "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1")])
    assert sorted(p.name for p in checkpoints.glob("last*.ckpt")) == ["last.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 1


def _fit_killed_at_second_epoch(run, cache: str, common: list[str]) -> None:
    with pytest.raises(RuntimeError, match="simulated kill"):
        cli_main(["fit", *_args(run, cache, *common),
                  "--trainer.callbacks+=test_cli_classifier.CrashAtSecondEpoch"])


def test_fit_killed_mid_run_resumes_from_last(tmp_path, embedded_cache):
    run = tmp_path / "run"
    common = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=2",
              "--trainer.limit_val_batches=1"]
    _fit_killed_at_second_epoch(run, embedded_cache, common)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0 and saved["global_step"] == 2

    resumed = cli_main(["fit", *_args(run, embedded_cache, *common), "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 3
    assert resumed.trainer.global_step == 6  # epochs 1 and 2 only: epoch 0 was not redone

    # ... and ends with the weights of a run that was never interrupted
    whole = cli_main(["fit", *_args(tmp_path / "whole", embedded_cache, *common)])
    _assert_same_weights(resumed.model, whole.model)


@pytest.mark.parametrize("mode", ["oversample", "mixup_all"])
def test_resumed_fit_equals_uninterrupted_fit(mode, tmp_path, embedded_cache, synthetic_manifest):
    """Every epoch's randomness (order, crops, flips, Mixup) comes from the seed and the epoch,
    so a fit interrupted after any epoch and resumed ends where an uninterrupted one does."""
    common = ["--trainer.max_epochs=3", "--trainer.limit_val_batches=1", "--seed_everything=3"]
    if mode == "oversample":
        config = ["--config", CONFIG, "--data.init_args.resample=oversample"]
        data = [*tiny_data_args(embedded_cache), "--data.init_args.num_workers=2"]  # persistent
    else:
        config = ["--config", "experiments/configs/embedded/classifier_real_synthetic.yaml"]
        data = [*tiny_data_args(embedded_cache, "data.init_args.real.init_args"),
                f"--data.init_args.synthetic=[{synthetic_manifest}]",
                "--data.init_args.mode=mixup_all"]

    def fit(run: Path, *extra: str):
        return cli_main(["fit", *config, f"--trainer.default_root_dir={run}",
                         "--trainer.enable_progress_bar=false",
                         "--trainer.enable_model_summary=false", *data, *common, *extra])

    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "run", "--trainer.callbacks+=test_cli_classifier.CrashAtSecondEpoch")
    resumed = fit(tmp_path / "run", "--ckpt_path=last")
    whole = fit(tmp_path / "whole")
    _assert_same_weights(resumed.model, whole.model)


def _assert_same_weights(a: L.LightningModule, b: L.LightningModule) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    worst = max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)
    assert worst == 0.0, f"largest weight difference {worst}"


BASELINES = sorted(str(p) for p in Path("experiments/configs/baselines").glob("*.yaml"))


@pytest.mark.parametrize("delta", [None, *BASELINES])
def test_embedded_classifier_and_each_baseline_fast_dev_run(delta, tmp_path, embedded_cache):
    stacked = ["--config", delta] if delta else []
    extra = []
    if delta and "synaug_last_layer" in delta:  # a second fit from a first run's checkpoint
        first = cli_main(["fit", *_args(tmp_path / "first", embedded_cache,
                                        "--trainer.fast_dev_run=true")])
        ckpt = tmp_path / "first.ckpt"
        first.trainer.save_checkpoint(ckpt)
        extra = [f"--model.init_args.init_checkpoint={ckpt}"]
    cli = cli_main(["fit", "--config", CONFIG, *stacked, f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.fast_dev_run=true", *tiny_data_args(embedded_cache), *extra])
    assert cli.trainer.state.finished
    if delta and "ldam" in delta:
        assert type(cli.model.model.fc).__name__ == "CosineLinear"
    if delta and "synaug_last_layer" in delta:
        model = cli.model.model
        assert not model.layer1[0].conv1.weight.requires_grad and model.fc.weight.requires_grad
        assert not model.bn1.training  # frozen BatchNorm statistics


@pytest.mark.parametrize("dataset", ["food101_lt", "vfn_lt"])
def test_real_dataset_configs_on_a_tiny_local_copy(dataset, tmp_path):
    from test_datasets import make_food101, make_vfn

    root = make_food101(tmp_path / "food") if dataset == "food101_lt" else make_vfn(tmp_path / "vfn")
    extra = ["--data.init_args.long_tail.n_max=6", "--data.init_args.long_tail.imbalance_factor=6"]
    cli = cli_main([
        "fit", "--config", "experiments/configs/sd14/classifier_ce.yaml",
        f"--data=experiments/configs/data/{dataset}.yaml",
        f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.fast_dev_run=true",
        "--trainer.accelerator=cpu", "--trainer.precision=32-true",
        f"--data.init_args.root={root}", "--data.init_args.num_head_classes=1",
        "--data.init_args.image_size=16", "--data.init_args.resize_size=16",
        "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
        *(extra if dataset == "food101_lt" else []),
    ])
    assert cli.trainer.state.finished
    assert cli.datamodule.dataset_info.num_classes == 3


def test_csv_logger_alternative(tmp_path, embedded_cache):
    cli_main(["fit", *_args(tmp_path, embedded_cache, "--trainer.max_epochs=1",
                            "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"),
              "--config", "experiments/configs/logger/csv.yaml"])
    assert list(tmp_path.glob("csv/version_*/metrics.csv"))


def test_invalid_config_fails_with_a_clear_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", CONFIG, "--model.init_args.lr_schedule=linear"])
    err = capsys.readouterr().err
    assert "lr_schedule" in err and "linear" in err
    assert "Traceback" not in err


def test_each_in_process_run_gets_its_own_wandb_run(tmp_path, embedded_cache, monkeypatch):
    """Pipeline stages run in one process: the second must not log into the first's W&B run."""
    from experiments.table import wandb_run_id

    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = [tmp_path / "first", tmp_path / "second"]
    for run in runs:
        cli_main(["fit", *_args(run, embedded_cache, "--trainer.max_epochs=1",
                                "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1")])
    ids = [wandb_run_id(run) for run in runs]
    assert all(ids) and ids[0] != ids[1]
    assert __import__("wandb").run is None  # closed when the CLI call returned


def test_a_resumed_fit_continues_its_wandb_run(tmp_path, embedded_cache, monkeypatch):
    from experiments.cli import previous_wandb_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    common = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=1",
              "--trainer.limit_val_batches=1"]
    _fit_killed_at_second_epoch(run, embedded_cache, common)
    first = previous_wandb_run(str(run))
    resumed = cli_main(["fit", *_args(run, embedded_cache, *common), "--ckpt_path=last"])
    assert first and resumed.trainer.logger.experiment.id == first
    import os

    assert os.environ["WANDB_CACHE_DIR"] == str(run / "wandb" / "cache_dir")  # W&B's side files
