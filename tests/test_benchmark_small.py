"""The speed benchmark runs end to end in its --small setting (a smoke test, not a timing)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler_speed.py"


def test_benchmark_small(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("sampler_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sampler_speed", module)  # dataclasses need it registered
    spec.loader.exec_module(module)
    out = tmp_path / "speed.json"
    result = module.main(["--small", "--steps", "2", "--batch-size", "1", "--json", str(out)])
    assert result.diffusers_cfg_s_per_image > 0 and result.disc_ds_s_per_image > 0
    assert result.ratio == result.disc_ds_s_per_image / result.diffusers_cfg_s_per_image
    assert json.loads(out.read_text())["ratio"] == result.ratio
    printed = capsys.readouterr().out
    assert "s/image" in printed and "ratio DiSC-DS / diffusers" in printed
    assert result.disc_ds_traced_s_per_image > 0 and result.diagnostics_overhead > 0
    assert "diagnostics recorded" in printed
