"""torchrun DDP on CPU (gloo): 2 processes follow the single-process loss curve with the same global
batch, and an interrupted 2-process run resumes to the same weights."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from babblelm.config import load_config
from babblelm.train.launch import train
from conftest import tiny_raw

SRC = Path(__file__).resolve().parents[1] / "src"


def _raw(corpus, out):
    return tiny_raw(corpus, out, optim={"name": "muon_adamw", "lr": 3e-3, "muon_lr": 0.02},
                    schedule={"name": "wsd", "warmup_steps": 2, "stable_fraction": 0.5, "decay_shape": "1-sqrt"},
                    train={"epochs": 0.12, "log_every": 1, "dev_every": 0})


def _torchrun(cfg_path: Path, *extra: str) -> None:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "babblelm.cli", "train", str(cfg_path), "--no-progress", *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_two_gloo_processes_match_one_process_and_resume(small_corpus, tmp_path):
    single = train(load_config(raw=_raw(small_corpus, tmp_path / "single")), progress=False)
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    shutil.copytree(tmp_path / "single" / "data", ddp_dir / "data")  # same prepared data (cache hit)
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(_raw(small_corpus, ddp_dir)))

    _torchrun(cfg_path, "--stop-after", "4")
    state = json.loads((ddp_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["world_size"] == 2
    _torchrun(cfg_path, "--resume")

    assert len(_losses(ddp_dir)) == single.steps > 6
    assert _losses(ddp_dir) == pytest.approx(_losses(tmp_path / "single"), rel=1e-5, abs=1e-6)
    state = json.loads((ddp_dir / "checkpoints" / "final" / "trainer_state.json").read_text())
    assert state["words_seen"] == single.words_seen
    a, b = load_file(single.final_dir / "model.safetensors"), load_file(ddp_dir / "checkpoints" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
