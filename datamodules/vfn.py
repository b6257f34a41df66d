"""VFN-LT: a folder of class subfolders plus split lists. Never downloads."""

from __future__ import annotations

from pathlib import Path

from datamodules.layout import read_class_names, read_split, require_dir
from datamodules.long_tailed import DatasetIndex, LongTailDataModule

VFN_LAYOUT = (
    "<root>/<images_dir>/<class>/<file>, a class list (one name per line) and split lists whose "
    "lines are '<class>/<file>' relative to the image directory"
)


class VFNLT(LongTailDataModule):
    """VFN-LT (74 classes, 1 to 288 training images per class, 25 test images per class).

    Args:
        root: Dataset root.
        train_list: Long-tailed training list, relative to ``root``.
        test_list: Balanced test list, relative to ``root``.
        classes_file: Class list, relative to ``root``; ``None`` = the sorted subfolders.
        images_dir: Folder of class subfolders, relative to ``root``.
        **kwargs: See :class:`LongTailDataModule` (VFN-LT: ``num_head_classes=22``).
    """

    def __init__(
        self,
        root: str,
        train_list: str = "train_lt.txt",
        test_list: str = "test.txt",
        classes_file: str | None = "classes.txt",
        images_dir: str = "images",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.train_list = train_list
        self.test_list = test_list
        self.classes_file = classes_file
        self.images_dir = images_dir

    def read_index(self) -> DatasetIndex:
        require_dir(self.root, "VFN-LT root", VFN_LAYOUT)
        images = require_dir(self.root / self.images_dir, "VFN-LT image directory", VFN_LAYOUT)
        if self.classes_file is not None:
            class_names = read_class_names(self.root / self.classes_file)
        else:
            class_names = sorted(p.name for p in images.iterdir() if p.is_dir())
        train = read_split(self.root / self.train_list, images, class_names, suffix="")
        test = read_split(self.root / self.test_list, images, class_names, suffix="")
        return DatasetIndex(class_names, train, test, f"split list {self.train_list}")
