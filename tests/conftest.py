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


def tiny_data_args(cache: str) -> list[str]:
    """CLI overrides that point a shipped config at the tiny embedded dataset."""
    args = [f"--data.init_args.cache_dir={cache}"]
    args += [f"--data.init_args.settings.{k}={v}" for k, v in TINY_SETTINGS.items()]
    return args + ["--data.init_args.batch_size=8"]
