"""Kill `babble train` with SIGKILL at random moments, resume it each time, compare the end.

A tiny run on the demo grammar is trained once without interruption, then again while being
killed `--kills` times at seeded random steps (every other kill also waits until a checkpoint is
being written: a `.tmp-*` folder exists), each time continued with `--resume` (or `--overwrite`
when no resume point was written yet). tests/test_reliability.py runs the same with 4 kills. The final weights must be bitwise those of the uninterrupted run.

    python benchmarks/kill_resume.py --kills 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def config(corpus: Path, out: Path) -> dict:
    return {"run": {"name": "kill", "out_dir": str(out), "seed": 7, "device": "cpu"},
            "data": {"corpus": str(corpus), "seq_len": 64, "track": "none"}, "tokenizer": {"vocab_size": 400},
            "model": {"arch": "transformer", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "intermediate_size": 128, "max_position_embeddings": 64},
            "optim": {"lr": 3e-3}, "schedule": {"warmup_steps": 5},
            "train": {"epochs": 1, "batch_size": 8, "log_every": 1, "dev_every": 0, "save_every": 3},
            "checkpoints": {"scale": 0.002}}


def last_step(metrics: Path) -> int:
    """The highest step logged in a metrics.jsonl that may be mid-write."""
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    return max((json.loads(line)["step"] for line in lines if line.endswith("}") and '"loss"' in line), default=0)


def kill_and_resume(raw: dict, kills: int, seed: int = 0) -> dict:
    """Train `raw` once in-process (its out_dir + "-whole"), then as `babble train` killed with SIGKILL
    at `kills` seeded steps (every other kill also waiting for a checkpoint write), resumed each time.
    -> {"rows": [(moment, how it went on)], "inside_writes", "equal" (bitwise final weights), "seconds"}."""
    from babblelm.config import load_config
    from babblelm.train.checkpoints import latest_resumable
    from babblelm.train.loop import train

    killed = Path(raw["run"]["out_dir"])
    whole = train(load_config(raw={**raw, "run": {**raw["run"], "out_dir": f"{killed}-whole"}}), progress=False)
    (killed.parent / "kill.yaml").write_text(yaml.safe_dump(raw))
    babble = [sys.executable, "-m", "babblelm.cli", "train", "kill.yaml", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    targets = sorted(random.Random(seed).sample(range(2, whole.steps - 2), kills))
    ckpts, rows = killed / "checkpoints", []
    start = time.perf_counter()
    for kill, target in enumerate([*targets, None]):
        resumable = latest_resumable(ckpts) is not None
        proc = subprocess.Popen([*babble, "--resume" if resumable else "--overwrite"], cwd=killed.parent, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if target is None:
            assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
            break
        while proc.poll() is None:  # wait for the target step (and, every other kill, a checkpoint write)
            if last_step(killed / "metrics.jsonl") >= target and (kill % 2 == 0 or list(ckpts.glob(".tmp-*"))):
                break
            time.sleep(0.001)
        assert proc.poll() is None, f"the run ended before kill {kill + 1} at step {target}"
        writing = bool(list(ckpts.glob(".tmp-*")))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows.append((f"step {last_step(killed / 'metrics.jsonl')}" + (", inside a checkpoint write" if writing else ""),
                     "resume" if resumable else "start over"))
    mine = load_file(ckpts / "final" / "model.safetensors")
    theirs = load_file(Path(whole.final_dir) / "model.safetensors")
    return {"rows": rows, "inside_writes": sum("inside" in moment for moment, _ in rows),
            "equal": mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from babblelm.data.synthetic import write_demo_corpus

    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    write_demo_corpus(work / "corpus", words=60_000, seed=0)
    result = kill_and_resume(config(work / "corpus", work / "killed"), args.kills, args.seed)
    print("| kill | moment | how the run went on |\n|---|---|---|")
    for i, (moment, how) in enumerate(result["rows"], 1):
        print(f"| {i} | {moment} | {how} |")
    print(f"\n{len(result['rows'])} kills ({result['inside_writes']} inside checkpoint writes) in {result['seconds']:.0f} s; "
          f"final weights bitwise equal to the uninterrupted run: {result['equal']}")
    if not result["equal"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
