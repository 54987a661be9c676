"""Stop `babble train` with SIGKILL, SIGINT or SIGTERM at random moments, resume it each time, compare the end.

A tiny run on the demo grammar is trained once without interruption, then again while being
stopped `--kills` times at seeded random steps (every other stop also waits until a checkpoint is
being written: a `.tmp-*` folder exists; the others land inside an optimizer step or between two),
each time continued with `--resume` (or `--overwrite` when no resume point was written yet). The
signals take turns (`--signals`): SIGINT and SIGTERM must end the run with exit status 130 / 143 and
say how to resume, SIGKILL ends it at once. The final weights and every milestone checkpoint must be
bitwise those of the uninterrupted run. tests/test_reliability.py runs the same with 6 stops.

    python benchmarks/kill_resume.py --kills 12 --signals KILL,INT,TERM
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


def weights_equal(a: Path, b: Path) -> bool:
    mine, theirs = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def kill_and_resume(raw: dict, kills: int, seed: int = 0, signals=(signal.SIGKILL,)) -> dict:
    """Train `raw` once in-process (its out_dir + "-whole"), then as `babble train` stopped by `signals` in
    turn at `kills` seeded steps (every other stop also waiting for a checkpoint write), resumed each time.
    -> {"rows": [(signal, moment, how it went on)], "inside_writes", "equal" (bitwise final weights),
    "milestones" (every milestone of the whole run there, bitwise equal), "seconds"}."""
    from babblelm.config import load_config
    from babblelm.train.checkpoints import latest_resumable
    from babblelm.train.launch import train

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
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if target is None:
            out = proc.communicate(timeout=600)[0]
            assert proc.returncode == 0, out[-2000:]
            break
        while proc.poll() is None:  # wait for the target step (and, every other kill, a checkpoint write)
            if last_step(killed / "metrics.jsonl") >= target and (kill % 2 == 0 or list(ckpts.glob(".tmp-*"))):
                break
            time.sleep(0.001)
        assert proc.poll() is None, f"the run ended before kill {kill + 1} at step {target}"
        writing = [p.name.split("-")[1] for p in ckpts.glob(".tmp-*")]
        sig = signals[kill % len(signals)]
        proc.send_signal(sig)
        out = proc.communicate(timeout=600)[0]
        if sig != signal.SIGKILL:  # stopped cleanly: the exit status and the way to resume
            assert proc.returncode == 128 + sig and "continue with" in out, (signal.Signals(sig).name, proc.returncode,
                                                                             out[-2000:])
        moment = f"step {last_step(killed / 'metrics.jsonl')}" + (f", inside the write of {writing[0]}" if writing else "")
        rows.append((signal.Signals(sig).name, moment, "resume" if resumable else "start over"))
    whole_milestones = sorted(p.name for p in Path(whole.final_dir).parent.glob("chck_*"))
    return {"rows": rows, "inside_writes": sum("inside" in moment for _, moment, _ in rows),
            "equal": weights_equal(ckpts / "final", Path(whole.final_dir)),
            "milestones": whole_milestones == sorted(p.name for p in ckpts.glob("chck_*")) and all(
                weights_equal(ckpts / name, Path(whole.final_dir).parent / name) for name in whole_milestones),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signals", default="KILL,INT,TERM", help="the signals to stop with, in turn")
    args = parser.parse_args()
    signals = [signal.Signals[f"SIG{name.strip().upper()}"] for name in args.signals.split(",")]
    from babblelm.data.synthetic import write_demo_corpus

    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    write_demo_corpus(work / "corpus", words=60_000, seed=0)
    result = kill_and_resume(config(work / "corpus", work / "killed"), args.kills, args.seed, signals)
    print("| stop | signal | moment | how the run went on |\n|---|---|---|---|")
    for i, (sig, moment, how) in enumerate(result["rows"], 1):
        print(f"| {i} | {sig} | {moment} | {how} |")
    print(f"\n{len(result['rows'])} stops ({result['inside_writes']} inside checkpoint writes) in {result['seconds']:.0f} s; "
          f"final weights bitwise equal to the uninterrupted run: {result['equal']}; every milestone there and "
          f"bitwise equal: {result['milestones']}")
    if not (result["equal"] and result["milestones"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
