"""`babble sweep`: one run per grid combination, one table of dev perplexity (Markdown + CSV)."""

import csv

import yaml

from babblelm.cli import main
from conftest import tiny_raw


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
