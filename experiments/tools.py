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
    "judge-agreement": "experiments.judge_agreement:judge_agreement",
    "world": "experiments.world_report:world_report",
    "plots": "experiments.plots:render_plots",
    "negatives": "experiments.negatives:select_negatives",
    "planted-subclasses": "experiments.planted_subclasses:planted_subclasses",
    "checksum": "experiments.assets:checksum",
    "manifest": "callbacks.generation_writer:rebuild_manifest_of_directory",
}

SUBCOMMANDS = {
    "fit": "train a model (classifier, diffusion fine-tune / pre-training)",
    "validate": "validate a model on the validation split",
    "test": "test a classifier: head / tail / overall top-1 and a per-class CSV",
    "predict": "generate images (synthesis), or features (clustering)",
    "pipeline": "run a list of stages (the main job, ablations, baselines) and their tables",
    "table": "head / tail / overall table of finished classifier runs",
    "judge": "what synthetic sets depict: fidelity, confusion, diversity, sub-modes",
    "judge-agreement": "the same sets read by judges of other seeds: what hinges on the judge",
    "world": "the planted problems of the embedded world, measured with its judge",
    "negatives": "DiSC-DS stage 1b: each class's most confusable class from a reference set",
    "planted-subclasses": "the planted sub-modes as a subclasses.csv (ClusDiff's oracle control)",
    "evaluate-synthetic": "FID / IS of a synthetic set against a real split",
    "plots": "every picture a finished run allows",
    "sweep": "a W&B sweep YAML run locally, without a W&B server",
    "trial": "one sweep trial (the command a W&B agent runs)",
    "checksum": "verify (or record) the checksums of a shipped model directory",
    "manifest": "rebuild a synthetic set's manifest from its PNGs (after sharded generation)",
}


def usage() -> str:
    """The top-level help: every subcommand, one line each."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    return ("usage: python -m experiments <subcommand> --config <yaml> [--key value ...]\n\n"
            "subcommands:\n" + "\n".join(lines) +
            "\n\n'python -m experiments <subcommand> --help' lists a subcommand's options.")


def _resolve(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def run_tool(argv: list[str]):
    """Run tool ``argv[0]`` with the remaining arguments."""
    from jsonargparse import CLI

    return CLI(_resolve(TOOLS[argv[0]]), args=argv[1:], as_positional=False)
