"""The stage runner of the main job: ``python -m experiments pipeline --config <pipeline.yaml>``.

A pipeline is a list of stages; each stage is one ``python -m experiments ...`` invocation
(LightningCLI subcommand or tool) run in-process. A finished stage leaves a record
``<run_dir>/stages/<name>.json`` holding a fingerprint of its inputs (its arguments, the contents
of the config files it names, and the fingerprints of the stages it depends on) and the metrics it
produced. On a re-run, a stage whose record matches is skipped, so a killed pipeline continues
where it stopped; changing a config re-runs that stage and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.utilities import rank_zero_info

from datamodules.atomic import atomic_write_text
from experiments.cli import DEFAULTS
from experiments.table import Row, write_table


@dataclass
class Stage:
    """One step of a pipeline.

    Attributes:
        name: Unique name; also the record's file name.
        args: The command line after ``python -m experiments``, e.g.
            ``["fit", "--config", "experiments/configs/embedded/classifier_ce.yaml"]``.
        metrics: Metric names to keep from the run (``trainer.callback_metrics``).
        after: Names of earlier stages whose outputs this stage reads.
        resume: A ``fit`` stage that was interrupted with the same inputs continues from its
            ``last`` checkpoint (``--ckpt_path last``) instead of starting over.
        metrics_json: A JSON file the stage writes whose top-level numbers are metrics too
            (e.g. the clustering stage's ``clustering.json``).
    """

    name: str
    args: list[str]
    metrics: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    resume: bool = False
    metrics_json: str | None = None


def _config_paths(args: list[str]) -> list[Path]:
    return [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a in ("--config", "-c")]


LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def fingerprint(stage: Stage, upstream: list[str]) -> str:
    """Hash of everything the stage's result depends on that the runner can see: arguments,
    config files (with the ones they name, and the defaults every LightningCLI call loads) and
    the fingerprints of the stages it reads."""
    h = hashlib.sha256(json.dumps([stage.args, upstream]).encode())
    if stage.args and stage.args[0] in LIGHTNING_SUBCOMMANDS:  # loaded before every config
        h.update(DEFAULTS.read_bytes())
    for path in _config_paths(stage.args):
        h.update(path.read_bytes())
        for ref in _referenced_files(path):
            h.update(ref.read_bytes())
    return h.hexdigest()[:16]


def _referenced_files(config: Path, seen: set[Path] | None = None) -> list[Path]:
    """Config files a composite config names by relative path, at any depth and transitively
    (``model: ../model/x.yaml``, ``data.init_args.real: ../data/food101_lt.yaml``)."""
    seen = set() if seen is None else seen
    refs = []
    for value in _strings(yaml.safe_load(config.read_text())):
        candidate = (config.parent / value).resolve()
        if value.endswith((".yaml", ".yml")) and candidate.is_file() and candidate not in seen:
            seen.add(candidate)
            refs += [candidate, *_referenced_files(candidate, seen)]
    return refs


def _strings(node) -> list[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        node = list(node.values())
    return [s for item in node for s in _strings(item)] if isinstance(node, list) else []


def _collect_metrics(stage: Stage, result) -> dict[str, float]:
    """The stage's named metrics from the run's trainer, its returned dict (or ``.metrics()``),
    and the stage's JSON file.

    Raises:
        ValueError: A named metric the run did not produce (a misspelt name would otherwise show
            as "not measured" in the summary).
    """
    names, metrics_json = stage.metrics, stage.metrics_json
    trainer = getattr(result, "trainer", None)
    found = dict(trainer.callback_metrics) if trainer is not None else {}
    if isinstance(result, dict):
        found.update(result)
    elif hasattr(result, "metrics"):
        found.update(result.metrics())
    if metrics_json is not None and Path(metrics_json).is_file():
        found.update(json.loads(Path(metrics_json).read_text()))
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(
            f"stage {stage.name!r}: metrics {missing} were not produced; it produced "
            f"{sorted(found)}"
        )
    return {n: float(found[n]) for n in names}




def run_stages(
    stages: list[Stage],
    run_dir: Path,
    overrides: list[str] | None = None,
    stage_overrides: dict[str, list[str]] | None = None,
) -> dict[str, dict]:
    """Run (or skip) each stage in order; return every stage's record.

    ``overrides`` are appended to every LightningCLI stage (e.g. ``--trainer.accelerator=gpu``),
    ``stage_overrides[name]`` to the stage ``name`` only.
    """
    from experiments.__main__ import cli_main

    records: dict[str, dict] = {}
    record_dir = run_dir / "stages"
    record_dir.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        if overrides and stage.args[0] in LIGHTNING_SUBCOMMANDS:
            stage = replace(stage, args=[*stage.args, *overrides])
        if stage_overrides and stage.name in stage_overrides:
            stage = replace(stage, args=[*stage.args, *stage_overrides[stage.name]])
        upstream = [records[name]["fingerprint"] for name in stage.after]
        key = fingerprint(stage, upstream)
        path = record_dir / f"{stage.name}.json"
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("fingerprint") == key:
                rank_zero_info(f"[pipeline] {stage.name}: up to date, skipped")
                records[stage.name] = record
                continue
        args = list(stage.args)
        running = path.with_suffix(".running")
        if stage.resume and running.is_file() and running.read_text() == key:
            args += ["--ckpt_path", "last"]
        running.write_text(key)
        rank_zero_info(f"[pipeline] {stage.name}: python -m experiments {' '.join(args)}")
        started = time.perf_counter()
        result = cli_main(args)
        record = {"fingerprint": key, "args": stage.args,
                  "seconds": round(time.perf_counter() - started, 1),
                  "metrics": _collect_metrics(stage, result)}
        del result  # the stage's model and trainer: free them before the next stage builds its own
        _release_memory()
        atomic_write_text(path, json.dumps(record, indent=2))
        running.unlink(missing_ok=True)
        records[stage.name] = record
    return records


def _release_memory() -> None:
    """Collect the finished stage's objects and return its cached GPU memory to the device.

    torch.compile's caches (a generation stage's compiled UNet) reference the compiled module, so
    they are reset first; the next stage compiles its own model anyway.
    """
    import gc
    import sys

    import torch

    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class SummaryLine:
    """A single metric of a stage shown under the table (ARI, recovered pairs, FID, ...)."""

    label: str
    stage: str
    metric: str
    digits: int = 3


def run_pipeline(
    stages: list[Stage],
    run_dir: str = "runs/pipeline",
    params: dict[str, Any] | None = None,
    table: list[Row] | None = None,
    summary: list[SummaryLine] | None = None,
    overrides: list[str] | None = None,
    stage_overrides: dict[str, list[str]] | None = None,
) -> dict[str, dict]:
    """Run a pipeline and print its results table; ``--config <pipeline.yaml>`` gives the
    arguments (the signature is the YAML's schema).

    In stage arguments and table rows (run_dir, dataset, paper), ``{run_dir}`` and ``{<param>}``
    are replaced by their values, so one pipeline serves the main job, the tests, sweep trials and
    every dataset.

    Args:
        stages: The steps, in order.
        run_dir: Where everything of this pipeline is written.
        params: Named values used in the arguments (e.g. the sampler's tau and alpha).
        table: Classifier runs for the head / tail / overall table.
        summary: Single metrics of stages, listed under the table.
        overrides: Arguments appended to every LightningCLI stage, e.g.
            ``["--trainer.accelerator=gpu"]`` (one process: several devices are refused).
        stage_overrides: Arguments appended to single stages, by stage name.
    """
    _check_single_process(overrides)
    values = {**(params or {}), "run_dir": run_dir}

    def fill(text: str | None, where: str) -> str | None:
        try:
            return None if text is None else str(text).format_map(values)
        except KeyError as missing:
            raise ValueError(
                f"pipeline {where}: placeholder {{{missing.args[0]}}} in {text!r} has no value; "
                f"give it in params (given: {sorted(values)})"
            ) from None

    # Every placeholder is filled before the first stage runs: a missing one fails now.
    stages = [replace(s, args=[fill(a, f"stage {s.name!r}") for a in s.args],
                      metrics_json=fill(s.metrics_json, f"stage {s.name!r}")) for s in stages]
    rows = [Row(r.method, *(fill(v, f"table row {r.method!r}")
                            for v in (r.run_dir, r.dataset, r.paper))) for r in table or []]
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    out = Path(run_dir)
    records = run_stages(stages, out, overrides, stage_overrides)
    report = write_table(rows, out / "results") + "\n\n" + summary_lines(summary or [], records)
    atomic_write_text(out / "results.md", report + "\n")
    print(report)
    return records


def _check_single_process(overrides: list[str] | None) -> None:
    """The runner is one process that runs its stages in turn; a multi-process launch would run
    the whole pipeline once per rank. Several GPUs: run the stage commands themselves."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    multi = [o for o in overrides or [] if o.startswith(("--trainer.strategy=ddp",
                                                        "--trainer.num_nodes="))
             or (o.startswith("--trainer.devices=") and o.split("=", 1)[1] not in ("1", "[0]"))]
    if world > 1 or multi:
        raise ValueError(
            f"the pipeline runs each stage in this one process (WORLD_SIZE={world}, overrides "
            f"{multi}); for several GPUs run the stages' commands (printed as they start, and in "
            "<run_dir>/stages/*.json) with --trainer.devices=-1 --trainer.strategy=ddp"
        )


def summary_lines(lines: list[SummaryLine], records: dict[str, dict]) -> str:
    """``label: value`` lines for single metrics of stages."""
    out = []
    for line in lines:
        value = records.get(line.stage, {}).get("metrics", {}).get(line.metric)
        shown = "not measured" if value is None else f"{value:.{line.digits}f}"
        out.append(f"- {line.label}: {shown}")
    return "\n".join(out)
