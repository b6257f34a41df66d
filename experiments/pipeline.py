"""The stage runner of the main job: ``python -m experiments pipeline --config <pipeline.yaml>``.

A pipeline is a list of stages; each stage is one or more ``python -m experiments ...``
invocations (LightningCLI subcommands or tools) run in-process. A stage is either

- ``args``: one command line, as typed after ``python -m experiments``; or
- ``fit_test``: the arguments of a classifier run, which becomes a ``fit`` and a ``test
  --ckpt_path last`` with those same arguments, in the run directory ``{run_dir}/<name>`` (its
  metrics: ``test/acc_overall``, ``test/acc_head``, ``test/acc_tail``).

A stage marked ``seeded`` is repeated for every seed of the pipeline's ``seeds``: ``{seed}`` in
its arguments takes the seed, LightningCLI commands get ``--seed_everything=<seed>``, and a
``fit_test`` stage runs in ``{run_dir}/<name>/seed<seed>``. Stages may be named from a
``library`` file of shared stage definitions (one file serves the main job and the ablations).

Each finished step leaves a record ``<run_dir>/stages/<step>.json`` holding a fingerprint of its
inputs (its arguments, the contents of the config files it names, and the fingerprints of the
stages it depends on) and the metrics it produced. On a re-run, a step whose record matches is
skipped, so a killed pipeline continues where it stopped; changing a config re-runs that stage and
everything after it. The results (``results.md``, ``results.csv``) hold only what the runs
produced (no run ids, no times), so two runs of a pipeline on one machine write the same bytes.
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
from experiments.seed_stats import summarize
from experiments.table import Row, write_table

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
METRICS_ENV = "LT_FOOD_SYNTH_METRICS_OUT"  # where a stage run as its own process puts metrics
TEST_METRICS = ["test/acc_overall", "test/acc_head", "test/acc_tail"]


@dataclass
class Stage:
    """One step of a pipeline, as written in the YAML.

    Attributes:
        name: Unique name; also the name of its run directory (``fit_test``) and records.
        args: The command line after ``python -m experiments``, e.g.
            ``["negatives", "--data", "experiments/configs/data/embedded.yaml"]``.
        fit_test: Instead of ``args``: the arguments of a ``fit`` followed by a ``test
            --ckpt_path last`` (the subcommand and the run directory are added).
        seeded: Run once per seed of the pipeline's ``seeds``.
        metrics: Metric names to keep from the run (``trainer.callback_metrics``, the returned
            dict or ``metrics_json``); a missing one is an error.
        optional_metrics: Metrics kept when the run produces them (e.g. the ARI against planted
            sub-modes, which only the embedded dataset has).
        after: Names of earlier stages whose outputs this stage reads.
        resume: An interrupted ``fit`` with the same inputs continues from its ``last``
            checkpoint (``--ckpt_path last``) instead of starting over (always for ``fit_test``).
        metrics_json: A JSON file the stage writes whose top-level numbers are metrics too.
        heavy: The pipeline's ``heavy_overrides`` (e.g. several GPUs) apply to the stage's fit
            and predict commands; a command that then asks for several devices or processes
            runs as its own process, through Lightning's launcher.
    """

    name: str
    args: list[str] = field(default_factory=list)
    fit_test: list[str] | None = None
    seeded: bool = False
    metrics: list[str] = field(default_factory=list)
    optional_metrics: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    resume: bool = False
    metrics_json: str | None = None
    heavy: bool = False

    def __post_init__(self) -> None:
        if bool(self.args) == (self.fit_test is not None):
            raise ValueError(
                f"stage {self.name!r}: give exactly one of args (a command) and fit_test (the "
                "arguments of a classifier fit and test)"
            )


@dataclass
class Step:
    """One command the runner executes: a stage, or one seed / one half of it."""

    name: str
    stage: str
    args: list[str]
    metrics: list[str] = field(default_factory=list)
    optional_metrics: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    resume: bool = False
    metrics_json: str | None = None
    seed: int | None = None
    run_dir: str | None = None  # the classifier run of a fit_test stage
    heavy: bool = False  # takes the pipeline's heavy_overrides


def expand(stage: Stage, seeds: list[int], fill) -> list[Step]:
    """The steps of a stage: one per seed if ``seeded``, a fit and a test if ``fit_test``.

    ``fill(text, where, seed)`` replaces the placeholders (``{seed}`` only in seeded stages).
    """
    steps = []
    for seed in seeds if stage.seeded else [None]:
        suffix = "" if seed is None else f".seed{seed}"
        where = f"stage {stage.name!r}"
        seed_args = [] if seed is None else [f"--seed_everything={seed}"]
        metrics_json = fill(stage.metrics_json, where, seed)
        if stage.fit_test is None:
            args = [fill(a, where, seed) for a in stage.args]
            if args[0] in LIGHTNING_SUBCOMMANDS:
                args += seed_args
            tested = _root_dir(args) if args[0] == "test" else None  # a row may show it
            steps.append(Step(f"{stage.name}{suffix}", stage.name, args, list(stage.metrics),
                              list(stage.optional_metrics), list(stage.after), stage.resume,
                              metrics_json, seed, tested,
                              stage.heavy and args[0] in ("fit", "predict")))
            continue
        run_dir = fill(f"{{run_dir}}/{stage.name}" + ("" if seed is None else f"/seed{seed}"),
                       where, seed)
        common = [*(fill(a, where, seed) for a in stage.fit_test),
                  f"--trainer.default_root_dir={run_dir}", *seed_args]
        fit = Step(f"{stage.name}{suffix}.fit", stage.name, ["fit", *common], [], [],
                   list(stage.after), True, None, seed, run_dir, stage.heavy)
        test = Step(f"{stage.name}{suffix}.test", stage.name,
                    ["test", *common, "--ckpt_path", "last"],
                    list(stage.metrics) or list(TEST_METRICS), list(stage.optional_metrics),
                    [fit.name], False, metrics_json, seed, run_dir)
        steps += [fit, test]
    return steps


def _root_dir(args: list[str]) -> str | None:
    """The ``--trainer.default_root_dir`` of a command line (the last one given), or None."""
    found = None
    for i, arg in enumerate(args):
        if arg.startswith("--trainer.default_root_dir="):
            found = arg.split("=", 1)[1]
        elif arg == "--trainer.default_root_dir" and i + 1 < len(args):
            found = args[i + 1]
    return found


def _config_paths(args: list[str]) -> list[Path]:
    return [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a in ("--config", "-c")]


def fingerprint(step: Step | Stage, upstream: list[str]) -> str:
    """Hash of everything the step's result depends on that the runner can see: arguments,
    config files (with the ones they name, and the defaults every LightningCLI call loads) and
    the fingerprints of the steps it reads."""
    h = hashlib.sha256(json.dumps([step.args, upstream]).encode())
    if step.args and step.args[0] in LIGHTNING_SUBCOMMANDS:  # loaded before every config
        h.update(DEFAULTS.read_bytes())
    for path in _config_paths(step.args):
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


def _collect_metrics(step: Step, result) -> dict[str, float]:
    """The step's named metrics from the run's trainer, its returned dict (or ``.metrics()``),
    and the stage's JSON file.

    Raises:
        ValueError: A required metric the run did not produce (a misspelt name would otherwise
            show as "not measured" in the summary).
    """
    trainer = getattr(result, "trainer", None)
    found = dict(trainer.callback_metrics) if trainer is not None else {}
    if isinstance(result, dict):
        found.update(result)
    elif hasattr(result, "metrics"):
        found.update(result.metrics())
    if step.metrics_json is not None and Path(step.metrics_json).is_file():
        found.update(json.loads(Path(step.metrics_json).read_text()))
    missing = [n for n in step.metrics if n not in found]
    if missing:
        raise ValueError(
            f"stage {step.name!r}: metrics {missing} were not produced; it produced "
            f"{sorted(found)}"
        )
    wanted = step.metrics + [n for n in step.optional_metrics if n in found]
    return {n: float(found[n]) for n in wanted}


def _resolve_after(step: Step, groups: dict[str, list[str]], done: dict[str, dict]) -> list[str]:
    names = []
    for name in step.after:
        if name in groups:
            names += groups[name]
        elif name in done:
            names.append(name)
        else:
            raise ValueError(f"stage {step.name!r}: 'after' names {name!r}, no earlier stage")
    return names


def run_stages(
    stages: list[Stage | Step],
    run_dir: Path,
    overrides: list[str] | None = None,
    stage_overrides: dict[str, list[str]] | None = None,
    seeds: list[int] | None = None,
    heavy_overrides: list[str] | None = None,
    classifier_overrides: list[str] | None = None,
) -> dict[str, dict]:
    """Run (or skip) each step in order; return every step's record, by step name.

    ``overrides`` are appended to every LightningCLI step (e.g. ``--trainer.accelerator=gpu``),
    ``heavy_overrides`` to the fit and predict steps of ``heavy`` stages (e.g.
    ``--trainer.devices=-1 --trainer.strategy=ddp``), ``classifier_overrides`` to the fit and test
    steps of the classifiers (``fit_test`` stages), ``stage_overrides[name]`` to the steps of
    stage ``name`` (or to the one step ``name``). A step that then asks for several devices or
    processes runs as its own ``python -m experiments`` process.
    """
    from experiments.__main__ import cli_main

    steps = [s for stage in stages for s in (
        expand(stage, seeds or [0], lambda t, w, s: t) if isinstance(stage, Stage) else [stage])]
    records: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    record_dir = run_dir / "stages"
    record_dir.mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(steps, start=1):
        if overrides and step.args[0] in LIGHTNING_SUBCOMMANDS:
            step = replace(step, args=[*step.args, *overrides])
        if heavy_overrides and step.heavy:
            step = replace(step, args=[*step.args, *heavy_overrides])
        if classifier_overrides and step.run_dir is not None:
            step = replace(step, args=[*step.args, *classifier_overrides])
        for key in (step.stage, step.name) if stage_overrides else ():
            if key in stage_overrides and (key == step.name or step.stage != step.name):
                step = replace(step, args=[*step.args, *stage_overrides[key]])
        upstream = [records[n]["fingerprint"] for n in _resolve_after(step, groups, records)]
        key = fingerprint(step, upstream)
        path = record_dir / f"{step.name}.json"
        where = f"[pipeline {number}/{len(steps)}] {step.name}"
        groups.setdefault(step.stage, []).append(step.name)
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("fingerprint") == key:
                rank_zero_info(f"{where}: up to date, skipped")
                records[step.name] = {**record, "stage": step.stage, "seed": step.seed,
                                      "run_dir": step.run_dir}
                continue
        args = list(step.args)
        running = path.with_suffix(".running")
        if step.resume and running.is_file() and running.read_text() == key:
            args += ["--ckpt_path", "last"]
        running.write_text(key)
        separate = _multi_process(args)
        rank_zero_info(f"{where}: python -m experiments {' '.join(args)}"
                       + (" (own processes)" if separate else ""))
        started = time.perf_counter()
        result = _run_in_subprocess(args, path.with_suffix(".metrics.json")) if separate else \
            cli_main(args)
        record = {"fingerprint": key, "args": step.args, "stage": step.stage, "seed": step.seed,
                  "run_dir": step.run_dir, "seconds": round(time.perf_counter() - started, 1),
                  "metrics": _collect_metrics(step, result)}
        del result  # the stage's model and trainer: free them before the next stage builds its own
        _release_memory()
        atomic_write_text(path, json.dumps(record, indent=2))
        running.unlink(missing_ok=True)
        records[step.name] = record
    return records


def _multi_process(args: list[str]) -> bool:
    """Whether a command asks Lightning for several devices, processes or nodes."""
    value = lambda key: next((a.split("=", 1)[1] for a in reversed(args)  # noqa: E731
                              if a.startswith(f"--trainer.{key}=")), None)
    devices, strategy, nodes = value("devices"), value("strategy"), value("num_nodes")
    return (devices not in (None, "1", "[0]", "auto") or (strategy or "").startswith("ddp")
            or nodes not in (None, "1"))


def _run_in_subprocess(args: list[str], metrics_path: Path) -> dict[str, float]:
    """Run a multi-device step as its own ``python -m experiments`` process (Lightning's launcher
    then starts the other ranks); its metrics come back through a JSON file rank 0 writes."""
    import subprocess
    import sys

    metrics_path.unlink(missing_ok=True)
    env = {**os.environ, METRICS_ENV: str(metrics_path)}
    done = subprocess.run([sys.executable, "-m", "experiments", *args], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"python -m experiments {' '.join(args)} failed with exit code "
                           f"{done.returncode}")
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics_path.unlink(missing_ok=True)
    return metrics


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
    """A single metric of a stage shown under the table (ARI, recovered pairs, FID, ...); for a
    seeded stage, its mean +- std over the seeds and each seed's value."""

    label: str
    stage: str
    metric: str
    digits: int = 3


@dataclass
class Appendix:
    """A Markdown file a stage wrote, appended to ``results.md`` under a heading (the judge's
    mechanism table)."""

    title: str
    path: str


def load_library(path: str | None) -> dict[str, dict]:
    """Stage definitions by name from a library YAML (``{name: {args|fit_test: ..., ...}}``)."""
    if path is None:
        return {}
    library = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(library, dict):
        raise ValueError(f"library {path}: expected a mapping of stage names to definitions")
    return library


def run_pipeline(
    stages: list[Stage | str],
    run_dir: str = "runs/pipeline",
    params: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    library: str | None = None,
    table: list[Row] | None = None,
    compare_with: list[str] | None = None,
    summary: list[SummaryLine] | None = None,
    appendix: list[Appendix] | None = None,
    overrides: list[str] | None = None,
    heavy_overrides: list[str] | None = None,
    stage_overrides: dict[str, list[str]] | None = None,
    classifier_overrides: list[str] | None = None,
) -> dict[str, dict]:
    """Run a pipeline and print its results; ``--config <pipeline.yaml>`` gives the arguments
    (the signature is the YAML's schema).

    In stage arguments, table rows and appendix paths, ``{run_dir}`` and ``{<param>}`` are
    replaced by their values (and ``{seed}`` in seeded stages), so one pipeline serves the main
    job, the tests, sweep trials and every dataset.

    Args:
        stages: The steps, in order: definitions, or names of definitions in ``library``.
        run_dir: Where everything of this pipeline is written.
        params: Named values used in the arguments (e.g. the sampler's tau and alpha).
        seeds: The seeds of the ``seeded`` stages (default ``[0]``).
        library: A YAML file of shared stage definitions, by name.
        table: Classifier rows of the head / tail / overall table; a row names its ``stage``
            (a ``fit_test`` stage: all its seeds) or a ``run_dir``.
        compare_with: Stages of baseline rows (e.g. ``[ce, ros]``): every row gets its paired
            difference of overall accuracy to each, over the common seeds.
        summary: Single metrics of stages, listed under the table.
        appendix: Markdown files of stages appended to ``results.md``.
        overrides: Arguments appended to every LightningCLI stage, e.g.
            ``["--trainer.accelerator=gpu"]``.
        heavy_overrides: Arguments appended to the fit and predict commands of the ``heavy``
            stages (generation, fine-tunes, classifier fits), e.g. ``["--trainer.devices=-1",
            "--trainer.strategy=ddp"]``: such commands run as their own processes.
        stage_overrides: Arguments appended to the steps of single stages, by stage name.
        classifier_overrides: Arguments appended to the fit and test commands of every classifier
            (``fit_test`` stages), e.g. a dataset's learning rate.
    """
    _check_single_process()
    values = {**(params or {}), "run_dir": run_dir}
    fill = _filler(values)
    # Every placeholder is filled before the first stage runs: a missing one fails now.
    steps = plan(stages, values, seeds, library)
    rows = [replace(r, **{k: fill(getattr(r, k), f"table row {r.method!r}")
                          for k in ("run_dir", "dataset", "paper")}) for r in table or []]
    runs = _classifier_runs(steps)
    for row in rows:
        if row.stage is not None and row.stage not in runs:
            raise ValueError(
                f"table row {row.method!r}: stage {row.stage!r} tests no classifier (a fit_test "
                "stage, or a test command with --trainer.default_root_dir)"
            )
    appendix = [replace(a, path=fill(a.path, f"appendix {a.title!r}")) for a in appendix or []]
    out = Path(run_dir)
    records = run_stages(steps, out, overrides, stage_overrides, heavy_overrides=heavy_overrides,
                         classifier_overrides=classifier_overrides)
    parts = [write_table(rows, runs, out / "results", compare_with or [])] if rows else []
    report = "\n\n".join([*parts, summary_lines(summary or [], records)])
    for part in appendix:
        text = Path(part.path).read_text() if Path(part.path).is_file() else "(not written)"
        report += f"\n\n## {part.title}\n\n{text.strip()}"
    atomic_write_text(out / "results.md", report + "\n")
    print(report)
    return records


def _filler(values: dict[str, Any]):
    """``fill(text, where, seed=None)``: ``text`` with ``{name}`` placeholders replaced."""

    def fill(text: str | None, where: str, seed: int | None = None) -> str | None:
        try:
            known = values if seed is None else {**values, "seed": seed}
            return None if text is None else str(text).format_map(known)
        except KeyError as missing:
            raise ValueError(
                f"pipeline {where}: placeholder {{{missing.args[0]}}} in {text!r} has no value; "
                f"give it in params (given: {sorted(values)})"
            ) from None

    return fill


def plan(
    stages: list[Stage | str], values: dict[str, Any], seeds: list[int] | None = None,
    library: str | None = None,
) -> list[Step]:
    """The steps (commands) of a pipeline, placeholders filled with ``values`` (which hold
    ``run_dir`` and the params), in order."""
    definitions = load_library(library)
    resolved = []
    for stage in stages:
        if isinstance(stage, str):
            if stage not in definitions:
                raise ValueError(f"pipeline: stage {stage!r} is not in library {library!r}")
            stage = Stage(name=stage, **definitions[stage])
        resolved.append(stage)
    names = [s.name for s in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    fill = _filler(values)
    return [step for s in resolved for step in expand(s, list(seeds or [0]), fill)]


def _classifier_runs(steps: list[Step]) -> dict[str, dict[int | None, str]]:
    """``stage -> {seed: run directory}`` of every classifier that a stage tests."""
    runs: dict[str, dict[int | None, str]] = {}
    for step in steps:
        if step.run_dir is not None:
            runs.setdefault(step.stage, {})[step.seed] = step.run_dir
    return runs


def _check_single_process() -> None:
    """The runner is one process that runs its stages in turn (starting multi-device stages as
    processes of their own); launched on several ranks, it would run the pipeline once per rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ValueError(
            f"the pipeline runner was started on {world} processes (WORLD_SIZE={world}); start "
            "it as one process and give the stages their devices with heavy_overrides, e.g. "
            "--heavy_overrides '[\"--trainer.devices=-1\", \"--trainer.strategy=ddp\"]'"
        )


def summary_lines(lines: list[SummaryLine], records: dict[str, dict]) -> str:
    """``label: value`` lines for single metrics of stages (mean +- std over seeds)."""
    out = []
    for line in lines:
        found = [(r["seed"], r["metrics"][line.metric]) for r in records.values()
                 if r["stage"] == line.stage and line.metric in r["metrics"]]
        if not found:
            shown = "not measured"
        elif len(found) == 1:
            shown = f"{found[0][1]:.{line.digits}f}"
        else:
            s = summarize([v for _, v in found])
            each = ", ".join(f"{v:.{line.digits}f}" for _, v in found)
            shown = (f"{s.mean:.{line.digits}f} +- {s.std:.{line.digits}f} over {s.n} seeds "
                     f"({each})")
        out.append(f"- {line.label}: {shown}")
    return "\n".join(out)
