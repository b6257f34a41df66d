"""The main job's stage runner: runs the shipped pipeline, skips finished stages on re-run."""

from __future__ import annotations

import json

from conftest import tiny_data_args

from experiments.__main__ import cli_main

MAIN = "experiments/configs/embedded/main.yaml"


def test_main_pipeline_runs_then_skips_finished_stages(tmp_path, embedded_cache, capsys):
    def run():
        overrides = [*tiny_data_args(embedded_cache), "--trainer.max_epochs=1",
                     "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
                     "--trainer.enable_progress_bar=false",
                     f"--trainer.default_root_dir={tmp_path / 'clf'}"]
        return cli_main(["pipeline", "--config", MAIN, "--run_dir", str(tmp_path / "main"),
                         "--overrides", json.dumps(overrides)])

    # The test stage reads the checkpoint path written in main.yaml; point it at tmp.
    records = run()
    assert set(records) >= {"classifier_ce_fit", "classifier_ce_test"}
    assert "test/acc_tail" in records["classifier_ce_test"]["metrics"]
    table = (tmp_path / "main" / "results.md").read_text()
    assert "| CE baseline" in table

    capsys.readouterr()
    again = run()
    out = capsys.readouterr()
    assert again == records
    assert "classifier_ce_fit: up to date, skipped" in out.out + out.err
