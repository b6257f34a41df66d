"""The main job's stage runner: runs the shipped pipeline, skips finished stages on re-run."""

from __future__ import annotations

import json

from conftest import tiny_data_args

from experiments.__main__ import cli_main

MAIN = "experiments/configs/embedded/main.yaml"


def test_main_pipeline_runs_then_skips_finished_stages(tmp_path, embedded_cache, caplog):
    def run():
        overrides = [*tiny_data_args(embedded_cache), "--trainer.max_epochs=1",
                     "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
                     "--trainer.enable_progress_bar=false"]
        return cli_main(["pipeline", "--config", MAIN, f"--run_dir={tmp_path / 'main'}",
                         f"--overrides={json.dumps(overrides)}"])

    records = run()
    assert set(records) >= {"classifier_ce_fit", "classifier_ce_test"}
    assert "test/acc_tail" in records["classifier_ce_test"]["metrics"]
    table = (tmp_path / "main" / "results.md").read_text()
    assert "| embedded | CE baseline (real only) |" in table
    assert "65.8 / 20.9 / 33.4" in table  # the paper's CE row alongside
    assert (tmp_path / "main" / "classifier_ce" / "per_class_accuracy_test.csv").is_file()

    caplog.clear()
    with caplog.at_level("INFO"):
        again = run()
    assert again == records
    assert "classifier_ce_fit: up to date, skipped" in caplog.text
