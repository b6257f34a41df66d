"""The ClusDiff clustering stage: a prediction writer that caches features and finds sub-classes.

Pairs with :class:`~lightning_modules.feature_extractor.ResNetFeatureExtractor` in ``predict``
(``{"features", "labels"}`` per batch). Under DDP each rank keeps its own shard (the predict
sampler gives every image to exactly one rank), writes it to the output directory, and after a
barrier rank 0 merges the shards in dataset order, clusters once and writes the results; a second
barrier makes every rank return only once the files exist.

Files written to ``output_dir`` (default: the run directory, ``trainer.default_root_dir``):

- ``features.safetensors`` (``features`` (N, 512) float32, ``labels`` (N,), ``indices`` (N,)) and
  ``images.txt`` (the N image paths, same order): the feature cache.
- ``subclasses.csv``: ``path,label,class_name,subclass,is_exemplar`` (the ClusDiff prompt input).
- ``subclass_summary.csv``: one row per class (sizes, preference, convergence, ARI).
- ``clustering.json``: the settings and the totals (mean ARI, non-converged classes).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from safetensors.torch import load_file, save_file

from datamodules.atomic import atomic_open, atomic_write_text
from datamodules.info import PlantedTruth
from lightning_modules.clustering import AriReport, adjusted_rand_per_class, cluster_classes

SUBCLASS_COLUMNS = ("path", "label", "class_name", "subclass", "is_exemplar")


class SubclassWriter(BasePredictionWriter):
    """Gather features, cluster every class into sub-classes, write ``subclasses.csv``.

    Args:
        output_dir: Where the files go; default the run directory (``trainer.default_root_dir``).
        max_subclasses: Cap on sub-classes per class (the paper's 10), enforced by lowering the
            affinity-propagation preference.
        random_state: scikit-learn ``random_state`` of affinity propagation.
        damping: Affinity-propagation damping in [0.5, 1).
        max_iter: Iterations per affinity-propagation run.
        preference_quantile: Starting preference as a quantile of the similarities (0.5: median,
            scikit-learn's default).
        bisection_steps: Runs allowed for the preference search per class.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        max_subclasses: int = 10,
        random_state: int = 0,
        damping: float = 0.5,
        max_iter: int = 1000,
        preference_quantile: float = 0.5,
        bisection_steps: int = 30,
    ) -> None:
        super().__init__(write_interval="batch")
        if max_subclasses < 1:
            raise ValueError(f"SubclassWriter: max_subclasses must be >= 1, got {max_subclasses}")
        self.output_dir = output_dir
        self.settings = dict(  # cluster_class's keyword arguments, also recorded in the report
            max_subclasses=max_subclasses, random_state=random_state, damping=damping,
            max_iter=max_iter, preference_quantile=preference_quantile,
            bisection_steps=bisection_steps,
        )
        self._shard: dict[str, list[torch.Tensor]] = {}

    def _out(self, trainer: L.Trainer) -> Path:
        return Path(self.output_dir or trainer.default_root_dir)

    # ---- gathering (every rank) --------------------------------------------------------------
    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._shard = {"features": [], "labels": [], "indices": []}

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, torch.Tensor],
        batch_indices: list[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not batch_indices:
            raise RuntimeError(
                "SubclassWriter needs the dataset index of every image: use a torch DataLoader "
                "in predict (Lightning then reports batch_indices)"
            )
        self._shard["features"].append(prediction["features"].detach().float().cpu())
        self._shard["labels"].append(prediction["labels"].detach().long().cpu())
        self._shard["indices"].append(torch.as_tensor(batch_indices, dtype=torch.long))

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self._out(trainer)
        out.mkdir(parents=True, exist_ok=True)
        shard = {k: torch.cat(v) if v else torch.empty(0) for k, v in self._shard.items()}
        save_file(shard, str(out / f".features-rank{trainer.global_rank}.safetensors"))
        self._shard = {}
        trainer.strategy.barrier("subclass_writer_shards")
        self._merge_and_cluster(trainer, out)
        trainer.strategy.barrier("subclass_writer_done")

    # ---- merging and clustering (rank 0) -----------------------------------------------------
    @rank_zero_only
    def _merge_and_cluster(self, trainer: L.Trainer, out: Path) -> None:
        shards = [out / f".features-rank{r}.safetensors" for r in range(trainer.world_size)]
        parts = [load_file(str(p)) for p in shards]
        indices = torch.cat([p["indices"] for p in parts if p["indices"].numel()])
        order = torch.argsort(indices)
        features = torch.cat([p["features"] for p in parts if p["indices"].numel()])[order]
        labels = torch.cat([p["labels"] for p in parts if p["indices"].numel()])[order]
        indices = indices[order]
        if len(torch.unique(indices)) != len(indices):
            raise RuntimeError("SubclassWriter: an image was predicted twice across ranks")
        for p in shards:
            p.unlink()

        samples = _predict_samples(trainer)
        paths = [samples[i].path for i in indices.tolist()]
        save_file(
            {"features": features.contiguous(), "labels": labels, "indices": indices},
            str(out / "features.safetensors"),
            metadata={"image_list": "images.txt", "feature": "resnet18 penultimate (512-d)"},
        )
        atomic_write_text(out / "images.txt", "".join(f"{p}\n" for p in paths))

        class_names = trainer.datamodule.dataset_info.class_names
        self._cluster_and_write(trainer, out, features.numpy(), labels.numpy(), paths, class_names)

    def _cluster_and_write(
        self,
        trainer: L.Trainer,
        out: Path,
        features: np.ndarray,
        labels: np.ndarray,
        paths: list[str],
        class_names: list[str],
    ) -> None:
        clustering = cluster_classes(features, labels, class_names, **self.settings)
        subclass, exemplar, summary = clustering.subclass, clustering.exemplar, clustering.summary

        with atomic_open(out / "subclasses.csv") as f:
            writer = csv.writer(f)
            writer.writerow(SUBCLASS_COLUMNS)
            for path, c, k, is_ex in zip(paths, labels.tolist(), subclass.tolist(), exemplar):
                writer.writerow([path, c, class_names[c], k, int(is_ex)])

        ari = self._ari(trainer, class_names, labels, subclass, paths)
        for row in summary:
            name = row["class_name"]
            row["ari"] = "" if ari is None else ari.per_class.get(name, "")
            row["ari_note"] = "" if ari is None else ari.skipped.get(name, "")
        with atomic_open(out / "subclass_summary.csv") as f:
            writer = csv.DictWriter(f, fieldnames=list(summary[0]))
            writer.writeheader()
            writer.writerows(summary)
        self._report(trainer, out, summary, ari)

    @staticmethod
    def _ari(
        trainer: L.Trainer,
        class_names: list[str],
        labels: np.ndarray,
        subclass: np.ndarray,
        paths: list[str],
    ) -> AriReport | None:
        if not isinstance(trainer.datamodule, PlantedTruth):
            return None
        planted = trainer.datamodule.planted_submodes()
        keys = [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]
        missing = [k for k in keys if k not in planted]
        if missing:
            raise KeyError(
                f"planted_submodes() has no entry for {len(missing)} images: {missing[:3]}"
            )
        return adjusted_rand_per_class(class_names, labels, subclass, [planted[k] for k in keys])

    def _report(
        self, trainer: L.Trainer, out: Path, summary: list[dict], ari: AriReport | None
    ) -> None:
        failed = [row["class_name"] for row in summary if not row["converged"]]
        counts = [row["num_subclasses"] for row in summary]
        totals: dict[str, Any] = {
            "settings": self.settings,
            "num_images": sum(row["num_images"] for row in summary),
            "num_classes": len(summary),
            "num_subclasses_total": sum(counts),
            "num_subclasses_max": max(counts),
            "nonconverged_classes": failed,
            "nonconverged_runs": sum(row["nonconverged_runs"] for row in summary),
        }
        lines = [
            f"SubclassWriter: {totals['num_images']} images, {len(summary)} classes -> "
            f"{sum(counts)} sub-classes (max {max(counts)} per class, cap "
            f"{self.settings['max_subclasses']}); files in {out}"
        ]
        if ari is not None:
            totals.update(ari_mean=ari.mean, ari_per_class=ari.per_class, ari_skipped=ari.skipped)
            per_class = ", ".join(f"{k} {v:.3f}" for k, v in ari.per_class.items())
            lines.append(
                f"adjusted Rand index vs planted sub-modes: mean {ari.mean:.4f} over "
                f"{len(ari.per_class)} classes ({per_class}); skipped {len(ari.skipped)}: "
                f"{ari.skipped}"
            )
        atomic_write_text(out / "clustering.json", json.dumps(totals, indent=2))
        rank_zero_info("\n".join(lines))
        if failed:
            rank_zero_warn(
                f"SubclassWriter: affinity propagation did not converge within the cap for "
                f"classes {failed}: each was given ONE sub-class (see subclass_summary.csv)"
            )
        metrics = {"clustering/num_subclasses_total": float(sum(counts)),
                   "clustering/nonconverged_classes": float(len(failed))}
        if ari is not None and ari.per_class:
            metrics["clustering/ari_mean"] = ari.mean
            metrics.update({f"clustering/ari/{k}": v for k, v in ari.per_class.items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=0)


def _predict_samples(trainer: L.Trainer) -> list:
    """The samples (``.path``, ``.label``) of the predict dataset, in dataset-index order."""
    loaders = trainer.predict_dataloaders
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    samples = getattr(loader.dataset, "samples", None)
    if samples is None:
        raise TypeError(
            f"SubclassWriter needs a predict dataset with .samples (paths), got "
            f"{type(loader.dataset).__name__}"
        )
    return samples
