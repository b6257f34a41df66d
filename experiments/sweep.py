"""Sweeps over the sampler's tau and alpha: one trial = a generation then a classifier run.

- ``python -m experiments trial --pipeline <trial.yaml> --tau 0.5 --alpha 0.8`` runs one trial
  (the pipeline with ``{tau}``/``{alpha}`` filled in) and logs its metrics to W&B. This is the
  ``command`` of the W&B sweep YAMLs (``${args}`` expands to ``--tau=... --alpha=...``), so a
  W&B server's ``wandb agent`` drives it unchanged.
- ``python -m experiments sweep --sweep <sweep.yaml>`` runs the same sweep YAML without a W&B
  server: the ``sweeps`` package (``sweeps.next_run``) proposes grid / random / bayes trials
  locally; each trial is run in-process, logged to an offline W&B run and to ``trials.csv``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import yaml

from datamodules.atomic import atomic_open
from experiments.pipeline import Appendix, Stage, SummaryLine, run_pipeline
from experiments.table import Row


def load_pipeline(path: str | Path) -> dict[str, Any]:
    """A pipeline YAML as keyword arguments of :func:`run_pipeline`."""
    spec = yaml.safe_load(Path(path).read_text())
    spec["stages"] = [s if isinstance(s, str) else Stage(**s) for s in spec["stages"]]
    spec["table"] = [Row(**r) for r in spec.get("table", [])]
    spec["summary"] = [SummaryLine(**s) for s in spec.get("summary", [])]
    spec["appendix"] = [Appendix(**a) for a in spec.get("appendix", [])]
    return spec


def trial(
    pipeline: str,
    tau: float = 0.8,
    alpha: float = 0.8,
    result_stages: list[str] | None = None,
    run_root: str = "runs/sweeps",
    params: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    stage_overrides: dict[str, list[str]] | None = None,
) -> dict[str, float]:
    """Run one sweep trial and return (and log) the metrics of its ``result_stages``.

    Args:
        pipeline: Trial pipeline YAML whose stage arguments use ``{tau}`` and ``{alpha}``.
        tau: DiSC-DS tau.
        alpha: DiSC-DS alpha (weight of plain CFG against CCFG).
        result_stages: The stages whose metrics are the trial's result (default: every stage
            that records metrics; e.g. ``val/*`` to select on and ``test/*`` to report).
        run_root: Each trial writes under ``<run_root>/tau<tau>_alpha<alpha>``.
        params: Other pipeline parameters (e.g. ``{"negatives": ...}``).
        overrides: Appended to every LightningCLI stage (see :func:`run_pipeline`).
        stage_overrides: Appended to single stages, by name.
    """
    spec = load_pipeline(pipeline)
    spec["params"] = {**spec.get("params", {}), **(params or {}), "tau": tau, "alpha": alpha}
    spec["run_dir"] = str(Path(run_root) / f"tau{tau:g}_alpha{alpha:g}")
    records = run_pipeline(**spec, overrides=overrides, stage_overrides=stage_overrides)
    names = result_stages or [name for name, record in records.items() if record["metrics"]]
    metrics = {k: v for name in names for k, v in records[name]["metrics"].items()}
    _log_to_wandb(spec["run_dir"], {"tau": tau, "alpha": alpha}, metrics)
    return metrics


def _log_to_wandb(run_dir: str, config: dict, metrics: dict) -> None:
    """Log a trial's result to W&B: the agent's run when a sweep agent started us, else an
    offline run in the trial directory (``WANDB_MODE`` is respected, e.g. ``disabled``)."""
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")
    run = wandb.init(project="lt-food-synth-sweeps", dir=run_dir, config=config, mode=mode,
                     reinit="finish_previous")
    run.log(metrics)
    run.summary.update(metrics)
    run.finish()


def _trial_args(command: list[str], params: dict[str, Any]) -> list[str]:
    """The sweep YAML's command as ``experiments`` arguments, with ``${args}`` filled in."""
    if "experiments" not in command:
        raise ValueError(f"sweep command {command}: expected '... -m experiments <subcommand> ...'")
    rest = command[command.index("experiments") + 1 :]
    args: list[str] = []
    for item in rest:
        if item == "${args}":
            args += [f"--{k}={v}" for k, v in params.items()]
        else:
            args.append(item)
    return args


def run_offline_sweep(
    sweep: str, out_dir: str = "runs/sweeps/offline", max_trials: int | None = None
) -> list[dict[str, Any]]:
    """Run a W&B sweep YAML locally (no W&B server) and write ``<out_dir>/trials.csv``.

    Args:
        sweep: A W&B sweep YAML (``method``, ``metric``, ``parameters``, ``command``).
        out_dir: Where the trial table goes.
        max_trials: Stop after this many trials; required unless the method is ``grid`` (which
            stops by itself when exhausted): random and bayes propose trials forever.

    Raises:
        ValueError: No ``max_trials`` for a random / bayes sweep, or a trial that did not report
            the sweep's metric.
    """
    import warnings

    from experiments.__main__ import cli_main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import RunState, SweepRun, next_run  # noqa: F401 (pydantic warnings)

    config = yaml.safe_load(Path(sweep).read_text())
    metric, goal = config["metric"]["name"], config["metric"].get("goal", "minimize")
    if goal not in GOALS:
        raise ValueError(f"sweep {sweep}: metric goal must be one of {GOALS}, got {goal!r}")
    if max_trials is None and config.get("method") != "grid":
        raise ValueError(
            f"sweep {sweep}: method {config.get('method')!r} never runs out of trials; "
            "give --max_trials"
        )
    runs: list = []
    rows: list[dict[str, Any]] = []
    while max_trials is None or len(runs) < max_trials:
        suggestion = next_run(config, runs)
        if suggestion is None:
            break
        params = {k: v["value"] for k, v in suggestion.config.items()}
        result = cli_main(_trial_args(config["command"], params)) or {}
        if metric not in result:
            raise ValueError(
                f"sweep {sweep}: trial {len(runs) + 1} ({params}) reported no {metric!r}; "
                f"it reported {sorted(result)}"
            )
        suggestion.state = RunState.finished
        suggestion.summary_metrics = dict(result)
        runs.append(suggestion)
        rows.append({"trial": len(runs), **params, **result})
        _write_trials(Path(out_dir) / "trials.csv", rows)
    print(f"{len(rows)} trials; best ({goal} {metric}): {best_trial(rows, metric, goal)}")
    return rows


GOALS = ("maximize", "minimize")


def best_trial(rows: list[dict[str, Any]], metric: str, goal: str) -> dict[str, Any] | None:
    """The trial with the best ``metric`` for ``goal`` (``maximize`` / ``minimize``, W&B's)."""
    pick = max if goal == "maximize" else min
    return pick(rows, key=lambda r: r[metric], default=None)


def _write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
