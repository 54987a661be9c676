"""benchmarks/gpu_run.py --tiny: the GPU acceptance run's phases, tiny, on the CPU, so the script
cannot rot between the rare GPU runs: every phase runs and writes its records as it goes. No time
limits (`--no-budgets`) and no speed thresholds: a busy machine is slower, not wrong."""

import json
import subprocess
import sys
from pathlib import Path

from babblelm.models.registry import names

REPO = Path(__file__).resolve().parents[1]


def test_every_phase_runs_and_records(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_run.py"), "--tiny", "--no-budgets",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((tmp_path / "gpu_run.json").read_text())
    assert (tmp_path / "gpu_run.md").read_text().count("\n- [") == len(records)
    by = lambda phase, what: [r for r in records if r["phase"] == phase and r["what"] == what]  # noqa: E731
    assert by("env", "environment")[0]["torch"]
    smoke = by("env", "smoke")
    assert {r["arch"] for r in smoke} == set(names())  # every registered architecture
    assert all(r["status"] == "ok" for r in smoke), smoke
    throughput = by("throughput", "throughput")  # every preset measured (the Triton kernels need CUDA)
    assert len(throughput) == 6 and not [r for r in throughput if r["status"] == "failed"], throughput
    measured = [r for r in throughput if r["status"] == "ok"]
    assert len(measured) >= 5 and all(r["ratio"] > 0 and r["tokens_per_s"] > 0 for r in measured)
    runs = by("strict_small", "babble run")
    assert [r["preset"] for r in runs] == ["llama-26m", "conv-induction-3.9m", "blalm-strict-small"]
    for run in runs:
        assert run["status"] == "ok" and run["milestones"] >= 5 and 0 <= run["blimp"] <= 100, run
        assert run["dev_ppl"] > 1 and "| chck_1M |" in run["learning_curve"]
    assert len(by("env", "phase done") + by("throughput", "phase done") + by("strict_small", "phase done")) == 3
