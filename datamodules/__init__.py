"""DataModules: datasets and splits on disk -> batches."""

from datamodules.embedded.datamodule import EmbeddedFoodLT
from datamodules.food101 import Food101LT
from datamodules.info import DatasetInfo
from datamodules.long_tail import ExponentialProfile
from datamodules.long_tailed import LongTailDataModule
from datamodules.vfn import VFNLT

__all__ = [
    "VFNLT",
    "DatasetInfo",
    "EmbeddedFoodLT",
    "ExponentialProfile",
    "Food101LT",
    "LongTailDataModule",
]
