"""The LightningCLI behind ``python -m experiments fit|validate|test|predict --config ...``.

Model and data are chosen in subclass mode (``class_path`` / ``init_args``). The datamodule's
:class:`~datamodules.info.DatasetInfo` is linked to the model once, here. Everything a run writes
(config, checkpoints, W&B/CSV logs, reports) lands under ``trainer.default_root_dir``: loggers
without a ``save_dir`` and checkpoint callbacks without a ``dirpath`` are pointed there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

os.environ.setdefault("WANDB_SILENT", "true")
DEFAULTS = Path(__file__).parent / "configs" / "defaults.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class ExperimentCLI(LightningCLI):
    """LightningCLI with the project's links and run-directory conventions."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.dataset_info", "model.init_args.dataset_info", apply_on="instantiate"
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        trainer = config["trainer"]
        root = trainer.get("default_root_dir") or "runs/default"
        trainer["default_root_dir"] = root
        _default_init_arg(trainer.get("logger"), "save_dir", root, unset=(None, "."))
        _default_init_arg(
            trainer.get("callbacks"), "dirpath", os.path.join(root, "checkpoints"),
            only_class="ModelCheckpoint",
        )
        _wandb_files_into(root)
        if self.subcommand == "fit" and config.get("ckpt_path"):  # a resumed fit: same W&B run
            run_id = previous_wandb_run(root)
            if run_id:
                _default_init_arg(trainer.get("logger"), "id", run_id, only_class="WandbLogger")

    def _parse_ckpt_path(self) -> None:
        """Lightning's: with ``--ckpt_path <file>``, the checkpoint's hyper-parameters replace the
        model settings of the config and command line. Warn when that overrides one of them
        (to evaluate a checkpoint's weights under other settings, e.g. post-hoc logit
        adjustment, load them with ``model.init_args.init_checkpoint`` instead)."""
        before = _model_settings(self.config)
        super()._parse_ckpt_path()
        after = _model_settings(self.config)
        changed = {
            k: (v, after.get(k)) for k, v in before.items()
            if k != "dataset_info" and v != after.get(k)
        }
        if changed:
            rank_zero_warn(
                "--ckpt_path restores the checkpoint's model hyper-parameters over this run's: "
                + "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                + ". To keep this run's settings, load the weights with "
                "--model.init_args.init_checkpoint instead"
            )

    def after_fit(self) -> None:
        for callback in self.trainer.checkpoint_callbacks:
            if getattr(callback, "monitor", None) and callback.best_model_path:
                rank_zero_info(f"best checkpoint ({callback.monitor}): {callback.best_model_path}")


WANDB_DIRS = ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR")
_WANDB_DIRS_SET: dict[str, str] = {}  # the values this module set (a user's own are kept)


def _wandb_files_into(root: str) -> None:
    """W&B's cache, data, artifact and config folders inside the run directory (it puts them
    in ~/.cache and /tmp otherwise), unless the user set them."""
    for name in WANDB_DIRS:
        if os.environ.get(name) in (None, _WANDB_DIRS_SET.get(name)):
            value = os.path.join(root, "wandb", name.removeprefix("WANDB_").lower())
            os.environ[name] = _WANDB_DIRS_SET[name] = value


def previous_wandb_run(root: str) -> str | None:
    """The id of the latest W&B run in a run directory, if any (``wandb/latest-run``)."""
    latest = Path(root) / "wandb" / "latest-run"
    return latest.resolve().name.rsplit("-", 1)[-1] if latest.exists() else None


def _model_settings(config) -> dict:
    """The model's ``init_args`` of the subcommand in ``config``, as plain values."""
    subcommand = config.get("subcommand")
    model = config.get(subcommand, {}).get("model") if subcommand else None
    init_args = getattr(model, "init_args", None)
    if init_args is None:
        return {}
    return init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args)


def _default_init_arg(
    entries, key: str, value: str, only_class: str | None = None, unset: tuple = (None,)
) -> None:
    """Set ``init_args.<key>`` to ``value`` in class-path entries that leave it ``unset``."""
    if entries is None or isinstance(entries, bool):
        return
    for entry in entries if isinstance(entries, list) else [entries]:
        class_path = str(getattr(entry, "class_path", ""))
        if only_class and not class_path.endswith(only_class):
            continue
        init_args = getattr(entry, "init_args", None)
        if init_args is not None and key in init_args and init_args[key] in unset:
            init_args[key] = value


def lightning_cli(args: list[str] | None = None, run: bool = True) -> ExperimentCLI:
    """Build (and by default run) the experiment CLI; ``args`` as on the command line."""
    failed = False
    try:
        cli = ExperimentCLI(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "parser_mode": "omegaconf",
                **{cmd: {"default_config_files": [str(DEFAULTS)]} for cmd in SUBCOMMANDS},
            },
            args=args,
            run=run,
        )
        if run:
            _write_metrics(cli)
        return cli
    except BaseException:
        failed = True
        raise
    finally:
        if run:
            finish_wandb_run(exit_code=1 if failed else 0)


def _write_metrics(cli: ExperimentCLI) -> None:
    """The run's metrics as JSON where a pipeline that started it as a process asked for them."""
    path = os.environ.get("LT_FOOD_SYNTH_METRICS_OUT")
    if path and cli.trainer.is_global_zero:
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        Path(path).write_text(json.dumps(metrics))


def finish_wandb_run(exit_code: int = 0) -> None:
    """One CLI call is one W&B run: close the one it opened.

    Without this, the next call in the same process (pipeline stages, sweep trials, tests) gets
    the open run back from ``wandb.init`` and logs into it under the wrong run directory.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)  # a failed call shows as failed, not finished
