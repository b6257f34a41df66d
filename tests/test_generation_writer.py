"""The generation writer: atomic PNGs with records, resume, manifest rebuild, DDP sharding."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest

from callbacks.generation_writer import ChangedSettingsError, GenerationWriter, read_record
from datamodules.generation import GenerationRequests
from datamodules.manifest import read_guidance, read_manifest
from lightning_modules.diffusion import TinyDiffusionConfig
from lightning_modules.sampling import GuidanceConfig
from lightning_modules.synthesis import Synthesizer


def _generate(
    real, out: Path, variant: str = "cads", regenerate_changed: bool = False,
    shard: str | None = None, **trainer_kwargs
) -> GenerationWriter:
    datamodule = GenerationRequests(real, per_class=1, image_size=32, batch_size=3, shard=shard)
    model = Synthesizer(
        tiny=TinyDiffusionConfig(), guidance=GuidanceConfig(variant=variant),
        num_inference_steps=2, strength=0.8,
    )
    writer = GenerationWriter(str(out), regenerate_changed=regenerate_changed)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[writer], **trainer_kwargs,
    )
    trainer.predict(model, datamodule=datamodule, return_predictions=False)
    return writer


def _pngs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png"))}


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, embedded_cache) -> dict[str, bytes]:
    from conftest import TINY_SETTINGS

    from datamodules import EmbeddedFoodLT
    from datamodules.embedded import EmbeddedSettings

    out = tmp_path_factory.mktemp("gen-1")
    real = EmbeddedFoodLT(cache_dir=embedded_cache, settings=EmbeddedSettings(**TINY_SETTINGS))
    _generate(real, out, devices=1)
    return _pngs(out)


def test_images_records_and_manifest(single_process, tiny_datamodule, tmp_path):
    assert len(single_process) == 10
    out = tmp_path / "run"
    _generate(tiny_datamodule, out, devices=1)
    assert _pngs(out) == single_process  # deterministic in the seeds
    rows = read_manifest(out, tiny_datamodule.dataset_info.class_names)
    assert sorted(s.row.path for s in rows) == sorted(single_process)
    assert [s.row.seed for s in rows] == list(range(10))  # request order
    record = read_record(out / rows[0].row.path)
    assert record == rows[0].row and record.sampler == "cads"
    assert record.params["num_inference_steps"] == 2 and record.params["strength"] == 0.8
    assert record.params["ccfg_norm"] == "sum"

    # guidance diagnostics of every image beside the manifest, in request order, and summarised
    guidance = read_guidance(out)
    assert [g["path"] for g in guidance] == [s.row.path for s in rows]
    first = guidance[0]
    assert len(first["gamma"]) == int(2 * 0.8) == len(first["coef_pos"])  # steps run
    assert first["coef_pos"] == [2.0] and first["coef_neg"] == [0.0] and first["w_neg"] is None
    summary = json.loads((out / "guidance_summary.json").read_text())
    assert summary["sampler"] == "cads" and summary["images"] == 10 and summary["steps"] == 1
    assert summary["coef_pos_median"] == [2.0] and summary["w_neg_median"] is None


def test_resume_regenerates_only_missing(single_process, tiny_datamodule, tmp_path):
    out = tmp_path / "run"
    _copy(single_process, out)
    names = sorted(single_process)
    (out / names[0]).unlink()  # lost
    (out / names[1]).write_bytes(single_process[names[1]][:50])  # truncated (not atomic)
    stale = out / Path(names[2]).parent / f".{Path(names[2]).name}.123.tmp"
    stale.write_bytes(b"half")  # a killed write
    (out / "manifest.jsonl").write_text('{"broken": ')
    writer = _generate(tiny_datamodule, out, devices=1)
    assert writer._written == 2
    assert _pngs(out) == single_process
    assert not list(out.rglob("*.tmp"))
    assert len(read_manifest(out, tiny_datamodule.dataset_info.class_names)) == 10
    (out / "manifest.jsonl").unlink()
    assert _generate(tiny_datamodule, out, devices=1)._written == 0  # complete: nothing to do
    assert len(read_manifest(out, tiny_datamodule.dataset_info.class_names)) == 10


def _copy(pngs: dict[str, bytes], out: Path) -> None:
    for name, data in pngs.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)


def test_other_settings_stop_the_run_and_keep_the_images(single_process, tiny_datamodule, tmp_path):
    """A re-run with another sampler must not pass the old images off as its own."""
    out = tmp_path / "run"
    _copy(single_process, out)
    with pytest.raises(ChangedSettingsError, match=r"(?s)10 existing image\(s\) in .*sampler: stored "
                       r"'cads', this run 'cfg'"):
        _generate(tiny_datamodule, out, variant="cfg", devices=1)
    assert _pngs(out) == single_process and not (out / "manifest.jsonl").exists()


def test_regenerate_changed_replaces_the_images(single_process, tiny_datamodule, tmp_path):
    out = tmp_path / "run"
    _copy(single_process, out)
    writer = _generate(tiny_datamodule, out, variant="cfg", regenerate_changed=True, devices=1)
    assert writer._written == 10
    rows = read_manifest(out, tiny_datamodule.dataset_info.class_names)
    assert {s.row.sampler for s in rows} == {"cfg"} and len(rows) == 10
    assert _pngs(out).keys() == single_process.keys() and _pngs(out) != single_process


def test_two_process_ddp_gives_identical_files(single_process, tiny_datamodule, tmp_path):
    """Sharded over 2 CPU processes (each image exactly once), byte-identical to 1 process."""
    out = tmp_path / "ddp"
    _generate(tiny_datamodule, out, devices=2, strategy="ddp_fork")  # ranks are forked children
    assert _pngs(out) == single_process
    assert len(read_manifest(out, tiny_datamodule.dataset_info.class_names)) == 10


def test_ddp_resume_with_fewer_pending_images_than_processes(
    single_process, tiny_datamodule, tmp_path
):
    """One missing image, two processes: one rank has nothing to do; no hang, no duplicate."""
    out = tmp_path / "ddp"
    _copy(single_process, out)
    (out / sorted(single_process)[3]).unlink()
    _generate(tiny_datamodule, out, devices=2, strategy="ddp_fork")
    assert _pngs(out) == single_process
    assert len(read_manifest(out, tiny_datamodule.dataset_info.class_names)) == 10


def test_independent_shards_write_the_one_process_set(single_process, tiny_datamodule, tmp_path):
    """Shards 0/3, 1/3, 2/3 (independent jobs, no collective) give the one-process images; the
    manifest of their union, rebuilt by the manifest tool, is the one-process manifest."""
    from callbacks.generation_writer import rebuild_manifest_of_directory

    whole = tmp_path / "whole"
    _generate(tiny_datamodule, whole, devices=1)
    out = tmp_path / "sharded"
    for k in range(3):
        _generate(tiny_datamodule, out, shard=f"{k}/3", devices=1)
        if k == 0:
            assert len(_pngs(out)) == 4  # batches 0 and 3 of 3 requests: requests 0, 1, 2, 9
    assert _pngs(out) == single_process
    (out / "manifest.jsonl").unlink()
    assert rebuild_manifest_of_directory(str(out)) == 10
    for name in ("manifest.jsonl", "guidance.jsonl"):
        assert (out / name).read_bytes() == (whole / name).read_bytes()
    with pytest.raises(ValueError, match="shard='3/3': expected 'k/N' with 0 <= k < N"):
        GenerationRequests(tiny_datamodule, shard="3/3")
