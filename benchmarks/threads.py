"""CPU threads: `babble` commands with `--threads 1` and `--threads 2` (torch's own default on a 2-core
machine), on a quiet machine and beside a busy core (a second process spinning on one core), and the
number the default (`run.threads: null`, device.cpu_threads) picks in each case.

    python benchmarks/threads.py --work /tmp/threads --load quiet    # under the CPU lock, alone
    python benchmarks/threads.py --work /tmp/threads --load busy     # starts and stops its own load

Workloads, each a whole `babble` command timed from outside (plus the time the command reports
for its own part where it prints one):
- demo: `babble demo --quick` (a 0.19M-parameter Transformer: data, training, evaluation, export);
- eval-small: `babble eval` of the quick demo's model on 3,000 BLiMP pairs (3 files of the 67);
- eval-11M: the same on 1,000 pairs with an untrained Transformer of llama-26m's shape (hidden 384,
  6 layers) and the demo's 1,024-token vocabulary (10.9M parameters);
- train-11M: `babble train` of that shape, 6 steps of 8 x 128 tokens on the demo corpus;
- generate-11M: `babble generate` of 100 tokens from it.
Prints one Markdown table row per workload and setting; BLiMP files come from --blimp.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLIMP_FILES = ("adjunct_island.jsonl", "anaphor_gender_agreement.jsonl", "anaphor_number_agreement.jsonl")


def babble(*args, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "babblelm.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"babble {' '.join(map(str, args))}: {proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def setup(work: Path, blimp: Path, env: dict) -> dict:
    """The inputs every setting shares: BLiMP subsets, the quick demo (its corpus and model), the 11M model."""
    paths = {"blimp3k": work / "blimp3k", "blimp1k": work / "blimp1k", "demo": work / "setup-demo"}
    for name, files in (("blimp3k", BLIMP_FILES), ("blimp1k", BLIMP_FILES[:1])):
        paths[name].mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(blimp / file, paths[name] / file)
    if not (paths["demo"] / "run" / "hf" / "config.json").is_file():
        babble("demo", "--quick", "--out", paths["demo"], "--threads", "2", env=env)
    paths["small"] = paths["demo"] / "run" / "checkpoints" / "final"
    paths["config"] = work / "llama-11m.yaml"
    paths["config"].write_text(json.dumps({
        "run": {"name": "threads-11m", "out_dir": str(work / "train-11m"), "device": "cpu"},
        "data": {"corpus": str(paths["demo"] / "corpus"), "seq_len": 128, "filters": ["childes_speaker_tags"]},
        "tokenizer": {"vocab_size": 1024},
        "model": {"arch": "transformer", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6,
                  "intermediate_size": 1024, "max_position_embeddings": 512},
        "train": {"steps": 6, "batch_size": 8, "log_every": 1, "dev_every": 0, "save_every": 0},
        "checkpoints": {"milestones": "none"}}))
    paths["big"] = work / "model-11m"
    if not (paths["big"] / "config.json").is_file():
        code = (f"import sys; sys.path.insert(0, {str(REPO / 'src')!r})\n"
                "from transformers import AutoTokenizer\n"
                "from babblelm.config import load_config\n"
                "from babblelm.train.engine import build_model\n"
                f"cfg = load_config({str(paths['config'])!r})\n"
                f"tok = AutoTokenizer.from_pretrained({str(paths['demo'] / 'run' / 'data' / 'tokenizer')!r})\n"
                "model = build_model(cfg, tok)\n"
                f"model.save_pretrained({str(paths['big'])!r}); tok.save_pretrained({str(paths['big'])!r})\n"
                "print(sum(p.numel() for p in model.parameters()))")
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
    return paths


def workloads(paths: dict, work: Path, threads: int):
    """(name, babble arguments, pattern of the time the command reports for its own part)."""
    t = ["--threads", threads]
    return [
        ("demo", ["demo", "--quick", "--out", work / f"demo-{threads}", *t], None),
        ("eval-small", ["eval", paths["small"], "--task", "blimp", "--data", paths["blimp3k"], "--device", "cpu",
                        "--out", work / f"eval-small-{threads}", "--force", *t], r"blimp: 3000 items in ([\d.]+) s"),
        ("eval-11M", ["eval", paths["big"], "--task", "blimp", "--data", paths["blimp1k"], "--device", "cpu",
                      "--out", work / f"eval-11m-{threads}", "--force", *t], r"blimp: 1000 items in ([\d.]+) s"),
        ("train-11M", ["train", paths["config"], "--overwrite", "--no-progress", *t], r"words, ([\d.]+)s; model"),
        ("generate-11M", ["generate", paths["big"], "the little dog", "--max-new-tokens", 100, "--device", "cpu", *t],
         None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (kept between the two loads)")
    parser.add_argument("--load", choices=["quiet", "busy"], required=True)
    parser.add_argument("--blimp", type=Path, default=REPO.parent / "shared" / "eval" / "blimp",
                        help="the 67 BLiMP files (default: ../shared/eval/blimp)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds the busy load runs before measuring")
    args = parser.parse_args()
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "PYTHONPATH": str(REPO / "src"),
           "TOKENIZERS_PARALLELISM": "false"}
    args.work.mkdir(parents=True, exist_ok=True)
    paths = setup(args.work, args.blimp, env)
    burner = None
    if args.load == "busy":
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(args.settle)
    try:
        picked = subprocess.run([sys.executable, "-c", "from babblelm.device import cpu_threads; print(cpu_threads())"],
                                capture_output=True, text=True, env=env, cwd=REPO).stdout.strip()
        print(f"load: {args.load}; the default picks {picked}; {os.cpu_count()} CPUs")
        print("| workload | load | threads | whole command (s) | its own part (s) | note |")
        print("|---|---|---|---|---|---|")
        for threads in (1, 2):
            for name, argv, own in workloads(paths, args.work, threads):
                seconds, out = babble(*argv, env=env)
                found = re.search(own, out) if own else None
                note = ""
                if name == "demo":
                    match = re.search(r"\(demo_pairs; synthetic pairs, not BLiMP\): ([\d.]+)% before -> ([\d.]+)%", out)
                    note = f"pairs {match.group(1)}% -> {match.group(2)}%" if match else ""
                print(f"| {name} | {args.load} | {threads} | {seconds:.1f} | {found.group(1) if found else ''} | {note} |",
                      flush=True)
    finally:
        if burner is not None:
            burner.kill()


if __name__ == "__main__":
    main()
