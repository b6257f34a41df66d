"""Every shipped YAML is exercised: run by a test, or a group file another shipped YAML names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from experiments.__main__ import cli_main
from experiments.sweep import load_pipeline

CONFIGS = Path("experiments/configs")
TESTS = Path("tests")


def _referenced(name: str, texts: list[str]) -> bool:
    return any(name in text for text in texts)


def test_every_shipped_yaml_is_used_by_a_test_or_another_config():
    test_text = [p.read_text() for p in TESTS.glob("test_*.py")]
    config_text = {p: p.read_text() for p in CONFIGS.rglob("*.yaml")}
    unused = []
    for path in config_text:
        rel = str(path.relative_to(CONFIGS))
        by_tests = _referenced(rel, test_text) or _referenced(path.name, test_text)
        by_configs = any(re.search(rf"[/ ]{re.escape(path.name)}", text)
                         for other, text in config_text.items() if other != path)
        globbed = path.parent.name in ("baselines", "sampler")  # parametrised over the folder
        if not (by_tests or by_configs or globbed or path.name == "defaults.yaml"):
            unused.append(rel)
    assert not unused, f"shipped configs no test exercises: {unused}"


@pytest.mark.parametrize(
    "name, dataset",
    [("gen_tau02", "embedded"), ("sd_all_fit", "embedded"), ("cads_test", "embedded"),
     ("tau05_fit", "food101_lt")],
)
def test_ablation_pipeline_stages_parse(name, dataset, tmp_path, capsys):
    stages = {s.name: s for s in load_pipeline(CONFIGS / "embedded" / "ablations.yaml")["stages"]}
    values = {"run_dir": str(tmp_path), "main": str(tmp_path / "main"), "dataset": dataset,
              "model": "experiments/assets/embedded_sd"}
    args = [a.format_map(values) for a in stages[name].args]
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def test_table_config_renders_with_missing_runs(tmp_path):
    markdown = cli_main(["table", "--config", str(CONFIGS / "tables" / "embedded_ablations.yaml"),
                         f"--out={tmp_path / 'table'}"])
    assert markdown.count("\n") == 11 and "food101_lt: 68.5 / 45.2 / 51.6" in markdown
    assert (tmp_path / "table.csv").is_file()


def test_vfn_lt_real_synthetic_config_parses(capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "vfn_lt" / "classifier_real_synthetic.yaml"),
                  "--print_config"])
    assert "mode: mixup_all" in capsys.readouterr().out


@pytest.mark.parametrize("platform", ["gpu.yaml", "ddp.yaml"])
def test_platform_configs_compose(platform, capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "embedded" / "classifier_ce.yaml"),
                  "--config", str(CONFIGS / "platform" / platform), "--print_config"])
    out = capsys.readouterr().out
    assert "accelerator: gpu" in out and "precision: bf16-mixed" in out


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_platform_runs_the_classifier(tmp_path, embedded_cache):
    from conftest import tiny_data_args

    cli = cli_main(["fit", "--config", str(CONFIGS / "embedded" / "classifier_ce.yaml"),
                    "--config", str(CONFIGS / "platform" / "gpu.yaml"),
                    f"--trainer.default_root_dir={tmp_path}", "--trainer.fast_dev_run=true",
                    *tiny_data_args(embedded_cache)])
    assert cli.trainer.state.finished and cli.model.device.type == "cuda"
