"""The command line's face: every subcommand in the help, one concise line for a bad setting."""

from __future__ import annotations

import sys

import pytest

from experiments.__main__ import cli_main, main
from experiments.cli import SUBCOMMANDS as LIGHTNING
from experiments.tools import SUBCOMMANDS, TOOLS


def test_help_lists_every_subcommand_once(capsys):
    assert set(SUBCOMMANDS) == set(TOOLS) | set(LIGHTNING)
    cli_main(["--help"])
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"\n  {name} " in out
    with pytest.raises(SystemExit, match="unknown subcommand 'fitt'"):
        cli_main(["fitt"])


def test_a_missing_model_directory_is_one_line(monkeypatch, capsys, tmp_path, embedded_cache):
    from conftest import tiny_data_args

    argv = ["predict", "--config", "experiments/configs/embedded/generate.yaml",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
            f"--model.init_args.pretrained_model_name_or_path={tmp_path / 'missing'}",
            *tiny_data_args(embedded_cache, "data.init_args.real.init_args")]
    monkeypatch.setattr(sys, "argv", ["experiments", *argv])
    monkeypatch.delenv("LT_FOOD_SYNTH_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stop:
        main()
    message = str(stop.value.code)
    assert message.startswith(f"error: no local model directory at '{tmp_path / 'missing'}'")
    assert message.count("\n") == 1 and "Traceback" not in message
    monkeypatch.setenv("LT_FOOD_SYNTH_TRACEBACK", "1")
    with pytest.raises((ValueError, FileNotFoundError), match="no local model directory"):
        main()
