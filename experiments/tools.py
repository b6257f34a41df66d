"""Subcommands that need no Trainer, dispatched before LightningCLI is built.

Each tool is a function whose signature is its schema (jsonargparse ``CLI``)."""

from __future__ import annotations

from collections.abc import Callable

TOOLS: dict[str, str] = {
    "pipeline": "experiments.pipeline:run_pipeline",
    "table": "experiments.table:make_table",
    "trial": "experiments.sweep:trial",
    "sweep": "experiments.sweep:run_offline_sweep",
    "evaluate-synthetic": "experiments.evaluate_synthetic:evaluate_synthetic",
    "judge": "experiments.judge:judge_sets",
    "world": "experiments.world_report:world_report",
    "plots": "experiments.plots:render_plots",
    "negatives": "experiments.negatives:select_negatives",
    "checksum": "experiments.assets:checksum",
}


def _resolve(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def run_tool(argv: list[str]):
    """Run tool ``argv[0]`` with the remaining arguments."""
    from jsonargparse import CLI

    return CLI(_resolve(TOOLS[argv[0]]), args=argv[1:], as_positional=False)
