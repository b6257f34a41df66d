"""Kill a real generation process (SIGKILL) mid-run, run again: the set is complete and exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import TINY_SETTINGS

from callbacks.generation_writer import read_record
from datamodules.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/embedded/generate.yaml"
REFERENCE = "experiments/configs/variants/reference_set.yaml"
PER_CLASS = 15  # 150 images: seconds of generation, so the kill lands mid-run


def _args(cache: str, out: Path) -> list[str]:
    real = "--data.init_args.real.init_args"
    return [
        "predict", "--config", CONFIG, "--config", REFERENCE, f"{real}.cache_dir={cache}",
        *[f"{real}.settings.{k}={v}" for k, v in TINY_SETTINGS.items()],
        f"--data.init_args.per_class={PER_CLASS}", "--data.init_args.batch_size=4",
        "--model.init_args.num_inference_steps=2", f"--trainer.default_root_dir={out}",
        "--trainer.enable_progress_bar=false",
    ]


def test_kill_and_resume(embedded_cache, tmp_path):
    out = tmp_path / "reference_set"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "TMPDIR": str(tmp_path)}  # the killed process's temp dirs stay in the test's folder
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments", *_args(embedded_cache, out)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while len(list(out.rglob("*.png"))) < 10:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the generation process wrote no images in 60 s"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    partial = len(list(out.rglob("*.png")))
    assert 10 <= partial < 10 * PER_CLASS, partial

    from experiments.__main__ import cli_main

    cli_main(_args(embedded_cache, out))

    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(pngs) == 10 * PER_CLASS == len(set(pngs))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    rows = read_manifest(out)
    assert sorted(s.row.path for s in rows) == pngs
    base = 1_000_000  # base_seed of the reference-set config: request i has seed base + i
    assert [s.row.seed for s in rows] == list(range(base, base + 10 * PER_CLASS))
    assert all(s.row.path == f"images/{s.row.class_name}/{s.row.seed:08d}.png" for s in rows)
    for sample in rows:
        assert read_record(Path(sample.path)) == sample.row
