"""`babble demo`: the quick variant through the real CLI; the full demo's accuracy bar is a slow test."""

import re
import subprocess
import sys
from pathlib import Path

import pytest


def _run_demo(out: Path, *flags: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "babblelm.cli", "demo", "--out", str(out), *flags],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _accuracy(out: str) -> tuple[float, float]:
    """(before, after) from the demo's closing accuracy line."""
    match = re.search(r"^demo minimal-pair accuracy \(demo_pairs; synthetic pairs, not BLiMP\): ([\d.]+)% before -> "
                      r"([\d.]+)% after", out, re.M)
    assert match, out[-3000:]
    return float(match.group(1)), float(match.group(2))


def test_quick_demo_runs_end_to_end(tmp_path):
    out = _run_demo(tmp_path / "demo", "--quick", "--threads", "1")
    before, after = _accuracy(out)
    assert after >= before + 10, (before, after)  # it learns visibly (README: about 80%)
    assert out.index("== data") < out.index("demo minimal pairs before training") < out.index("== train")
    assert "CPU threads: 1 (as asked" in out and "the model (Hugging Face)" in out and "next: `babble generate" in out
    assert (tmp_path / "demo" / "run" / "hf" / "model.safetensors").exists()
    assert list((tmp_path / "demo" / "run" / "checkpoints").glob("chck_*M"))
    card = (tmp_path / "demo" / "run" / "hf" / "README.md").read_text()
    assert "| demo_pairs | demo_pairs |" in card and "synthetic; not BLiMP" in card and "| blimp |" not in card
    assert "| source | available (clean) | words used | lines used |" in card  # what each source gave


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
    before, after = _accuracy(out)
    assert 35 <= before <= 65 and after >= 80, (before, after)
