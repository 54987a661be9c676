"""`babble demo`: the quick variant through the real CLI; the full demo's accuracy bar is a slow test."""

import subprocess
import sys
import time
from pathlib import Path

import pytest


def _run_demo(out: Path, *flags: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "babblelm.cli", "demo", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_quick_demo_runs_end_to_end(tmp_path):
    t0 = time.perf_counter()
    out = _run_demo(tmp_path / "demo", "--quick")
    elapsed = time.perf_counter() - t0
    assert "minimal-pair accuracy:" in out and "Hugging Face folder" in out
    assert (tmp_path / "demo" / "run" / "hf" / "model.safetensors").exists()
    assert list((tmp_path / "demo" / "run" / "checkpoints").glob("chck_*M"))
    assert elapsed < 120, f"quick demo took {elapsed:.0f}s"


@pytest.mark.parametrize("arch", ["blalm", "streammixer", "induction", "gpt2"])
def test_quick_demo_trains_every_architecture(tmp_path, arch):
    from babblelm.demo import run_demo

    result = run_demo(tmp_path / arch, quick=True, arch=arch)
    config = (tmp_path / arch / "run" / "hf" / "config.json").read_text()
    model_type = {"blalm": "blalm", "streammixer": "babble_streammixer", "induction": "babble_induction",
                  "gpt2": "gpt2"}[arch]
    assert f'"model_type": "{model_type}"' in config
    assert result["milestones"] and result["sample"].startswith("the little dog")


def test_demo_rejects_an_unknown_architecture():
    from babblelm.demo import demo_model

    with pytest.raises(ValueError, match="model.arch: unknown architecture 'mamba'; known: blalm, gpt2, induction"):
        demo_model("mamba", quick=True)


@pytest.mark.slow
def test_full_demo_reaches_80_percent(tmp_path):
    out = _run_demo(tmp_path / "demo")
    line = next(l for l in out.splitlines() if l.startswith("minimal-pair accuracy:"))
    before, after = (float(x.split("%")[0]) for x in line.split(": ")[1].split(" -> "))
    assert 35 <= before <= 65 and after >= 80, line
