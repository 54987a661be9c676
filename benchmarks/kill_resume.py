"""Kill `babble train` with SIGKILL at random moments, resume it each time, compare the end.

A tiny run on the demo grammar is trained once without interruption, then again while being
killed `--kills` times at seeded random steps (two kills in five also wait until a checkpoint is
being written: a `.tmp-*` folder exists), each time continued with `--resume` (or `--overwrite`
when no resume point was written yet). The final weights must be bitwise those of the uninterrupted run.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from babblelm.config import load_config
    from babblelm.data.synthetic import write_demo_corpus
    from babblelm.train.checkpoints import latest_resumable
    from babblelm.train.loop import train

    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    write_demo_corpus(work / "corpus", words=60_000, seed=0)
    whole = train(load_config(raw=config(work / "corpus", work / "whole")), progress=False)
    (work / "cfg.yaml").write_text(yaml.safe_dump(config(work / "corpus", work / "killed")))
    babble = [sys.executable, "-m", "babblelm.cli", "train", "cfg.yaml", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    targets = sorted(random.Random(args.seed).sample(range(2, whole.steps - 2), args.kills))
    ckpts, rows = work / "killed" / "checkpoints", []
    start = time.perf_counter()
    for kill, target in enumerate([*targets, None]):
        resumable = latest_resumable(ckpts) is not None
        proc = subprocess.Popen([*babble, "--resume" if resumable else "--overwrite"], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if target is None:
            assert proc.wait() == 0, proc.stderr.read()[-2000:]
            break
        inside = kill % 5 in (1, 3)  # two in five kills wait for a checkpoint write
        while proc.poll() is None:
            if last_step(work / "killed" / "metrics.jsonl") >= target and (not inside or list(ckpts.glob(".tmp-*"))):
                break
            time.sleep(0.001)
        writing = bool(list(ckpts.glob(".tmp-*")))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows.append((f"step {last_step(work / 'killed' / 'metrics.jsonl')}" + (", inside a checkpoint write" if writing else ""),
                     "resume" if resumable else "start over"))
    mine = load_file(work / "killed" / "checkpoints" / "final" / "model.safetensors")
    theirs = load_file(Path(whole.final_dir) / "model.safetensors")
    equal = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    print("| kill | moment | how the run went on |\n|---|---|---|")
    for i, (moment, how) in enumerate(rows, 1):
        print(f"| {i} | {moment} | {how} |")
    print(f"\n{len(rows)} kills ({sum('inside' in m for m, _ in rows)} inside checkpoint writes) in "
          f"{time.perf_counter() - start:.0f} s; final weights bitwise equal to the uninterrupted run: {equal}")
    if not equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
