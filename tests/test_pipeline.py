"""The main job's stage runner on the shipped main.yaml with tiny settings: every stage runs, the
table and summary are written, a failed run continues without redoing finished stages."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_data_args

from experiments.__main__ import cli_main
from experiments.pipeline import Stage, run_stages

MAIN = "experiments/configs/embedded/main.yaml"
MECHANISMS = "experiments/configs/pipelines/mechanisms.yaml"
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]


def _stage_overrides(cache: str) -> dict[str, list[str]]:
    """Per stage of main.yaml: the tiny dataset, 1-2 images per class, 2 sampler steps."""
    direct = tiny_data_args(cache)
    wrapped = tiny_data_args(cache, "data.init_args.real.init_args")
    generate = [*wrapped, "--data.init_args.per_class=1", "--model.init_args.num_inference_steps=2"]
    finetune = [*wrapped, "--trainer.max_steps=2", "--data.init_args.batch_size=8",
                "--trainer.callbacks.init_args.per_class=1",
                "--trainer.callbacks.init_args.max_classes=2",
                "--trainer.callbacks.init_args.num_inference_steps=2"]
    gens = ("gen_sd", "reference_set", "gen_disc_ds", "gen_clusdiff", "judged_cfg", "judged_cads",
            "judged_ccfg", "judged_disc_ds", "judged_disc_ds_mean", "judged_clusdiff",
            "judged_no_cluster")
    return {
        **{name: direct for name in ("ce", "ros", "cluster", "negatives")},
        **{name: generate for name in gens},
        "finetune_clusdiff": finetune, "finetune_no_cluster": finetune,
        **{name: wrapped for name in ("sd", "clusdiff", "disc_ds")},
        **{name: [*direct, "--oracle.per_submode=40", "--oracle.epochs=6",
                  "--require_accuracy=false", "--bootstrap=20"] for name in ("judge", "judge_all")},
    }


def _run(run_dir, cache, config=MAIN, seeds="[0, 1]", **extra):
    overrides = extra.pop("stage_overrides", None) or _stage_overrides(cache)
    return cli_main(["pipeline", "--config", config, f"--run_dir={run_dir}", f"--seeds={seeds}",
                     f"--overrides={json.dumps(FAST)}",
                     f"--stage_overrides={json.dumps(overrides)}"])


def test_main_job_end_to_end_resumes_after_a_failure_and_reproduces(tmp_path, embedded_cache,
                                                                    caplog):
    broken = _stage_overrides(embedded_cache)
    broken["gen_disc_ds"] = broken["gen_disc_ds"] + [
        f"--data.init_args.negatives_csv={tmp_path / 'missing.csv'}"]
    run = tmp_path / "main"
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        _run(run, embedded_cache, stage_overrides=broken)
    done = {p.stem for p in (run / "stages").glob("*.json")}
    assert {"ce.seed0.fit", "ce.seed1.test", "negatives.seed1", "reference_set"} <= done

    caplog.clear()
    with caplog.at_level("INFO"):
        records = _run(run, embedded_cache)
    assert "ce.seed0.fit: up to date, skipped" in caplog.text
    assert "[pipeline 5/" in caplog.text  # "stage k of N"
    report = (run / "results.md").read_text()
    for row in ("CE (real only)", "ROS (real only)", "pre-trained SD", "ClusDiff", "DiSC-DS"):
        assert row in report
    assert "not run" not in report and "not measured" not in report
    assert "| CE (real only) | 2 | 1 |" in report  # two seeds, one optimizer step each
    assert "vs CE (real only): overall diff [95% CI]" in report
    assert "mean adjusted Rand index" in report and "over 2 seeds" in report
    assert "## Mechanisms: the judge of each synthetic set" in report
    assert "| disc_ds | disc_ds |" in report and "| clusdiff | cfg |" in report
    assert "| cads |" not in report  # the components are the mechanisms pipeline's
    assert records["negatives.seed0"]["metrics"]["negatives/planted_pairs"] == 2
    assert (run / "ce" / "seed1" / "per_class_accuracy_test.csv").is_file()

    # a second run from scratch on the same machine writes the same results, byte for byte
    again = tmp_path / "again"
    _run(again, embedded_cache)
    assert (again / "results.md").read_text() == report.replace(str(run), str(again))
    assert (again / "results.csv").read_text() == (run / "results.csv").read_text().replace(
        str(run), str(again))


def test_mechanisms_pipeline_judges_every_sampler_on_the_same_requests(tmp_path, embedded_cache):
    records = _run(tmp_path / "mechanisms", embedded_cache, config=MECHANISMS, seeds="[0]")
    report = (tmp_path / "mechanisms" / "results.md").read_text()
    for row in ("cfg | cfg", "cads | cads", "ccfg | ccfg", "disc_ds | disc_ds",
                "disc_ds_mean_norm | disc_ds", "clusdiff | cfg", "finetune_no_cluster | cfg"):
        assert f"| {row} |" in report
    assert "planted confusable pairs recovered (of 2), CE seed 0: " in report
    assert "| Method |" not in report  # no classifier table without rows
    assert not any(name.startswith(("ros", "sd.", "disc_ds.")) for name in records)
    requests = {name: [(r["class_name"], r["seed"], r["source_image"]) for r in map(
        json.loads, (tmp_path / "mechanisms" / "judged" / name / "manifest.jsonl")
        .read_text().splitlines())] for name in ("cfg", "cads", "ccfg", "disc_ds")}
    assert requests["cfg"] and all(r == requests["cfg"] for r in requests.values())


def test_changed_inputs_rerun_the_stage(tmp_path):
    stage = Stage("a", ["table", "--out", str(tmp_path / "t"), "--rows", "[]"])
    first = run_stages([stage], tmp_path)
    assert run_stages([stage], tmp_path) == first
    changed = Stage("a", ["table", "--out", str(tmp_path / "u"), "--rows", "[]"])
    assert run_stages([changed], tmp_path)["a"]["fingerprint"] != first["a"]["fingerprint"]
    assert (tmp_path / "u.md").is_file()


def test_table_rows_take_the_params(tmp_path):
    from experiments.pipeline import run_pipeline
    from experiments.table import Row

    rows = [Row("CE", "{run_dir}/ce", dataset="{dataset}", paper="{paper}/ce")]
    run_pipeline([], str(tmp_path), params={"dataset": "vfn_lt", "paper": "vfn_lt"}, table=rows)
    report = (tmp_path / "results.md").read_text()
    assert "vfn_lt: 62.3 / 24.4 / 35.8" in report and "{" not in report


def test_fingerprint_follows_nested_and_transitive_config_references(tmp_path):
    from experiments.pipeline import fingerprint

    (tmp_path / "stage").mkdir()
    (tmp_path / "data").mkdir()
    config = tmp_path / "stage" / "gen.yaml"
    config.write_text("data:\n  init_args:\n    real: ../data/food.yaml\n")
    food, profile = tmp_path / "data" / "food.yaml", tmp_path / "data" / "profile.yaml"
    food.write_text("init_args: {root: /a, long_tail: profile.yaml}\n")
    profile.write_text("n_max: 750\n")
    stage = Stage("gen", ["predict", "--config", str(config)])
    before = fingerprint(stage, [])
    food.write_text("init_args: {root: /b, long_tail: profile.yaml}\n")
    after_root = fingerprint(stage, [])
    profile.write_text("n_max: 500\n")
    assert len({before, after_root, fingerprint(stage, [])}) == 3


def test_missing_placeholder_fails_before_any_stage_runs(tmp_path):
    from experiments.pipeline import run_pipeline
    from experiments.table import Row

    stage = Stage("a", ["table", "--out", str(tmp_path / "t"), "--rows", "[]"])
    with pytest.raises(ValueError, match=r"table row 'CE': placeholder \{paper\}"):
        run_pipeline([stage], str(tmp_path), params={"dataset": "vfn_lt"},
                     table=[Row("CE", "{run_dir}/ce", "{dataset}", "{paper}/ce")])
    assert not (tmp_path / "stages").exists() and not (tmp_path / "t.md").exists()


def test_a_ddp_stage_runs_as_its_own_two_processes(tmp_path, embedded_cache, caplog):
    """heavy_overrides ask for 2 CPU processes: the fit runs through Lightning's own launcher in
    a process of its own; the test step stays in this one; fingerprints and skipping hold."""
    run = tmp_path / "ddp"
    args = ["pipeline", "--config", MAIN, f"--run_dir={run}", "--seeds=[0]", "--stages=[ce]",
            "--table=[{method: CE, stage: ce}]", "--summary=[]", "--appendix=[]",
            "--compare_with=[]",
            f"--overrides={json.dumps([*FAST, *tiny_data_args(embedded_cache)])}",
            '--heavy_overrides=["--trainer.devices=2", "--trainer.strategy=ddp"]',
            '--classifier_overrides=["--model.init_args.optimizer.init_args.lr=0.0123"]']
    with caplog.at_level("INFO"):
        records = cli_main(args)
    assert "ce.seed0.fit: python -m experiments fit" in caplog.text
    lr = "--model.init_args.optimizer.init_args.lr=0.0123"  # a dataset's classifier setting
    assert lr in records["ce.seed0.fit"]["args"] and lr in records["ce.seed0.test"]["args"]
    assert "lr: 0.0123" in (run / "ce" / "seed0" / "config.yaml").read_text()
    assert "(own processes)" in caplog.text
    assert "| CE | 1 | 1 |" in (run / "results.md").read_text()  # 1 seed, 1 step
    assert records["ce.seed0.test"]["metrics"]["test/acc_overall"] >= 0
    saved = torch.load(run / "ce" / "seed0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 1  # one batch per process (limit_train_batches=1)
    caplog.clear()
    with caplog.at_level("INFO"):
        cli_main(args)
    assert "ce.seed0.fit: up to date, skipped" in caplog.text


def test_a_pipeline_launched_on_several_ranks_is_refused(tmp_path, monkeypatch):
    from experiments.pipeline import run_pipeline

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="started on 2 processes"):
        run_pipeline([], str(tmp_path))


def test_a_metric_the_stage_did_not_produce_is_named(tmp_path):
    stage = Stage("a", ["table", "--out", str(tmp_path / "t"), "--rows", "[]"],
                  metrics=["test/acc_overal"])
    with pytest.raises(ValueError, match=r"stage 'a': metrics \['test/acc_overal'\] were not "
                                         r"produced"):
        run_stages([stage], tmp_path)
    assert not (tmp_path / "stages" / "a.json").exists()  # no record: it runs again when fixed


def test_table_marks_an_empty_group_and_refuses_an_unknown_paper_method(tmp_path):
    from experiments.table import Row, build_table

    run = tmp_path / "run"
    run.mkdir()
    (run / "per_class_accuracy_test.csv").write_text(
        "class_index,class_name,is_head,train_count,correct,total,accuracy\n"
        "0,a,False,4,3,4,75.0\n1,b,False,2,1,4,25.0\n")
    markdown, records = build_table([Row("CE", str(run), paper="food101_lt/ce")])
    assert "| CE | 1 | - | - | 50.0 | 50.0 | food101_lt: 65.8 / 20.9 / 33.4 |" in markdown
    assert records[0]["acc_head"] is None and records[0]["acc_tail"] == 50.0
    with pytest.raises(ValueError, match=r"unknown method 'disc-ds'"):
        build_table([Row("DiSC-DS", str(run), paper="food101_lt/disc-ds")])


def test_baselines_pipeline_runs_every_row(tmp_path, embedded_cache):
    """Each classic baseline is a config away from CE: the shipped pipeline runs all of them."""
    spec = "experiments/configs/pipelines/baselines.yaml"
    run = tmp_path / "baselines"
    cli_main(["pipeline", "--config", spec, f"--run_dir={run}", "--seeds=[0]",
              f"--overrides={json.dumps([*FAST, *tiny_data_args(embedded_cache)])}"])
    report = (run / "results.md").read_text()
    for row in ("| CE |", "ROS", "RUS", "Focal", "Class-balanced", "Balanced Softmax",
                "Logit-adjusted loss", "post-hoc", "LDAM", "cRT"):
        assert row in report
    assert "not run" not in report and "food101_lt: 65.8 / 20.9 / 33.4" in report

    # The post-hoc row loads the CE weights with init_checkpoint: --ckpt_path would restore the
    # checkpoint's hyper-parameters (posthoc_logit_adjustment 0) over the config's, with a warning.
    ce = run / "ce" / "seed0" / "checkpoints" / "last.ckpt"
    args = ["test", "--config", "experiments/configs/embedded/classifier_ce.yaml",
            "--model.init_args.posthoc_logit_adjustment=1.0",
            f"--trainer.default_root_dir={tmp_path / 'posthoc'}", *FAST,
            *tiny_data_args(embedded_cache)]
    cli = cli_main([*args, f"--model.init_args.init_checkpoint={ce}"])
    assert cli.model.eval_adjustment.abs().sum() > 0
    with pytest.warns(UserWarning, match=r"posthoc_logit_adjustment: 1.0 -> 0.0"):
        cli = cli_main([*args, f"--ckpt_path={ce}"])
    assert cli.model.eval_adjustment.abs().sum() == 0
