"""Kill `babble train` with SIGKILL at random moments, resume it each time, compare the end.

A tiny run on the demo grammar is trained once without interruption, then again while being
killed `--kills` times at seeded random moments (every other kill waits until a checkpoint is being
written: a `.tmp-*` folder exists), each time continued with `--resume` (or `--overwrite` when no
resume point was written yet). The final weights must be bitwise those of the uninterrupted run.

    python benchmarks/kill_resume.py --kills 10
"""

from __future__ import annotations

import argparse
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
            "train": {"epochs": 1, "batch_size": 8, "log_every": 5, "dev_every": 0, "save_every": 3},
            "checkpoints": {"scale": 0.002}}


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
    rng, rows, kills = random.Random(args.seed), [], 0
    start = time.perf_counter()
    while True:
        resumable = latest_resumable(work / "killed" / "checkpoints") is not None
        proc = subprocess.Popen([*babble, "--resume" if resumable else "--overwrite"], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills == args.kills:
            assert proc.wait() == 0, proc.stderr.read()[-2000:]
            break
        inside, moment = kills % 2 == 1, "after {:.2f} s"
        deadline = time.monotonic() + 3.0 + rng.random() * 6.0
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() < deadline:
            if inside and list((work / "killed" / "checkpoints").glob(".tmp-*")):
                moment = "inside a checkpoint write, after {:.2f} s"
                break
            time.sleep(0.001)
        if proc.poll() is not None:  # it finished before the kill came: try again from scratch
            rows.append(("finished before the kill", "-"))
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        rows.append((moment.format(time.monotonic() - t0), "resume" if resumable else "start over"))
    mine = load_file(work / "killed" / "checkpoints" / "final" / "model.safetensors")
    theirs = load_file(Path(whole.final_dir) / "model.safetensors")
    equal = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    print("| kill | moment | how the run went on |\n|---|---|---|")
    for i, (moment, how) in enumerate(rows, 1):
        print(f"| {i} | {moment} | {how} |")
    print(f"\n{kills} kills ({sum('inside' in m for m, _ in rows)} inside checkpoint writes) in "
          f"{time.perf_counter() - start:.0f} s; final weights bitwise equal to the uninterrupted run: {equal}")
    if not equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
