"""Shared fixtures: W&B disabled, one torch thread, a tiny embedded dataset built once."""

from __future__ import annotations

import os

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

# Two cores: torch's intra-op threads contend with anything else running and make tiny models
# up to 50x slower; one thread is fastest for the tiny models the tests use.
torch.set_num_threads(1)

TINY_SETTINGS = dict(
    image_size=16, n_max=12, imbalance_factor=6.0, num_test=4, num_pretrain=4, seed=0
)


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory) -> str:
    """A cache directory holding the tiny embedded dataset (generated once per session)."""
    from datamodules.embedded import EmbeddedSettings, ensure_embedded_dataset

    cache = tmp_path_factory.mktemp("embedded-cache")
    ensure_embedded_dataset(cache, EmbeddedSettings(**TINY_SETTINGS))
    return str(cache)


@pytest.fixture()
def tiny_datamodule(embedded_cache):
    """The tiny embedded dataset as a DataModule (16 px, 12 -> 2 images per class)."""
    from datamodules import EmbeddedFoodLT
    from datamodules.embedded import EmbeddedSettings

    return EmbeddedFoodLT(
        cache_dir=embedded_cache, settings=EmbeddedSettings(**TINY_SETTINGS), batch_size=8
    )


def tiny_data_args(cache: str, prefix: str = "data.init_args") -> list[str]:
    """CLI overrides that point a shipped config at the tiny embedded dataset; ``prefix`` is where
    the EmbeddedFoodLT's init args sit (``data.init_args.real.init_args`` for a wrapper)."""
    args = [f"--{prefix}.cache_dir={cache}"]
    args += [f"--{prefix}.settings.{k}={v}" for k, v in TINY_SETTINGS.items()]
    return args + [f"--{prefix}.batch_size=8"]


@pytest.fixture()
def synthetic_manifest(tmp_path, tiny_datamodule):
    """A synthetic set in the manifest format: 3 images per tail class (copies of test images)."""
    import shutil

    from datamodules.manifest import ManifestRow, write_manifest

    out = tmp_path / "synthetic"
    info, rows = tiny_datamodule.dataset_info, []
    for label, name in enumerate(info.class_names):
        tests = [s for s in tiny_datamodule.index.test if s.label == label][:3]
        for k, sample in enumerate(tests):
            rel = f"images/{name}/{k:06d}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample.path, out / rel)
            rows.append(ManifestRow(path=rel, label=label, class_name=name, seed=k, sampler="copy"))
    write_manifest(out / "manifest.jsonl", rows)
    return out / "manifest.jsonl"
