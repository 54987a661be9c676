"""`babble sweep`: one run per grid combination, one table of dev perplexity (Markdown + CSV)."""

import csv
import json

import pytest
import yaml

from babblelm.cli import main
from conftest import tiny_raw
from eval_fixtures import write_eval_data


def test_sweep_runs_the_grid_and_writes_one_table(small_corpus, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_raw(small_corpus, tmp_path / "unused", train={"epochs": 0.1, "dev_every": 0})))
    out = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--grid", "optim.lr=1e-3,4e-3", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["run"] for r in rows] == ["lr=0.001", "lr=0.004"]
    assert [float(r["optim.lr"]) for r in rows] == [1e-3, 4e-3]
    assert all(1.0 < float(r["dev_ppl"]) < 400 for r in rows) and rows[0]["dev_ppl"] != rows[1]["dev_ppl"]
    for r in rows:
        assert (out / r["run"] / "checkpoints" / "final" / "model.safetensors").exists()
        assert yaml.safe_load((out / r["run"] / "config.yaml").read_text())["optim"]["lr"] == float(r["optim.lr"])
    manifests = [(out / r["run"] / "data" / "manifest.json").read_text() for r in rows]
    assert manifests[0] == manifests[1]  # one preparation (with its timings), reused by the second run
    table = (out / "sweep.md").read_text()
    assert table.startswith("| run | optim.lr | dev_loss | dev_ppl |") and "lr=0.004" in capsys.readouterr().out


def test_sweep_scores_every_combination_on_a_full_evaluation_folder(small_corpus, tmp_path):
    """`eval.data` at a full evaluation folder (as the README sets it): each run is scored on `eval.tasks` through
    the evaluation suite, under the 2026 rules, and its results land in its own results/final."""
    from babblelm.rundir import RunDir

    raw = tiny_raw(small_corpus, tmp_path / "unused", train={"epochs": 0.1, "dev_every": 0})
    raw["eval"] = {"tasks": ["blimp", "ewok"], "data": str(write_eval_data(tmp_path / "evaluation_data" / "full_eval"))}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--grid", "optim.lr=1e-3,4e-3", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["run"] for r in rows] == ["lr=0.001", "lr=0.004"]
    for row in rows:
        results = RunDir(out / row["run"]).results_of("final")
        scores = {task: json.loads((results / f"{task}.json").read_text()) for task in ("blimp", "ewok")}
        assert all(result["rules"] == "2026" for result in scores.values())
        assert [float(row[task]) for task in scores] == [pytest.approx(r["scores"][task]) for task, r in scores.items()]
        assert float(row["eval_avg"]) == pytest.approx(sum(float(row[task]) for task in scores) / 2)
    assert (out / "sweep.md").read_text().startswith("| run | optim.lr | dev_loss | dev_ppl | blimp | ewok | eval_avg |")


def test_sweep_refuses_an_unknown_task_before_training(small_corpus, tmp_path, capsys):
    raw = tiny_raw(small_corpus, tmp_path / "unused")
    raw["eval"] = {"tasks": ["blimpp"], "data": str(write_eval_data(tmp_path / "full_eval"))}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(cfg), "--grid", "optim.lr=1e-3,4e-3", "--out", str(tmp_path / "sweep")]) == 2
    assert "blimpp" in capsys.readouterr().err and not (tmp_path / "sweep").exists()
