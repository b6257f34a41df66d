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


def test_fit_killed_mid_run_resumes_from_last(tmp_path, embedded_cache):
    run = tmp_path / "run"
    common = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=2",
              "--trainer.limit_val_batches=1"]
    with pytest.raises(RuntimeError, match="simulated kill"):
        cli_main(["fit", *_args(run, embedded_cache, *common),
                  "--trainer.callbacks+=test_cli_classifier.CrashAtSecondEpoch"])
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0 and saved["global_step"] == 2

    resumed = cli_main(["fit", *_args(run, embedded_cache, *common), "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 3
    assert resumed.trainer.global_step == 6  # epochs 1 and 2 only: epoch 0 was not redone


@pytest.mark.parametrize(
    "config",
    ["experiments/configs/embedded/classifier_ce.yaml"],
)
def test_shipped_classifier_configs_fast_dev_run(config, tmp_path, embedded_cache):
    cli = cli_main(["fit", "--config", config, f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.fast_dev_run=true", *tiny_data_args(embedded_cache)])
    assert cli.trainer.state.finished


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
