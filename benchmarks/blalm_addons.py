"""Train every BLaLM add-on for a few hundred CPU steps from the strict-small preset (shrunk to a tiny
width) on babylike_10M and report whether the training loss falls.

    python benchmarks/blalm_addons.py --corpus PATH/babylike_10M [--steps 300]

The data are prepared once (every row has the same data config) and copied into each row's run.
Prints one Markdown table row per add-on: the training loss logged at steps 10-30 and at the last
three logging points (mean of three each), the dev loss after the run and the training seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from babblelm.config import load_config
from babblelm.data.prepare import copy_prepared, prepare_data
from babblelm.train.launch import train

REPO = Path(__file__).resolve().parents[1]
ADD_ONS = {
    "mLSTM only": {"short_conv": False},
    "+ short conv (strict-small)": {},
    "+ SWA": {"swa_window": 32},
    "+ SWA with memory tokens": {"swa_window": 32, "swa_memory_tokens": 4},
    "+ SWA, dynamic modulation": {"swa_window": 32, "swa_modulation": "dynamic"},
    "+ SWA, bounded modulation": {"swa_window": 32, "swa_modulation": "bounded"},
    "+ Hedgehog feature maps": {"feature_map": "hedgehog"},
}
TINY = ["model.hidden_size=64", "model.num_hidden_layers=2", "model.num_attention_heads=4",
        "model.intermediate_size=128", "model.max_position_embeddings=64", "model.chunk_size=16",
        "data.seq_len=64", "tokenizer.vocab_size=2000", "train.batch_size=16", "train.grad_accum=1",
        "train.log_every=10", "train.dev_every=100000", "train.save_every=0", "checkpoints.milestones=none",
        "optim.lr=3e-3", "run.device=cpu"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="a BabyLM-format folder, e.g. babylike_10M")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    words = args.steps * 16 * 40  # ~40 words per 64-token block
    print("| add-on | loss, steps 10-30 | loss, last 3 logs | dev loss at end | train s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp) / "data"
        for row, (name, switches) in enumerate(ADD_ONS.items()):
            overrides = TINY + [f"data.corpus={args.corpus}", f"data.max_words={words * 2}", f"train.words={words}",
                                f"run.out_dir={tmp}/run{row}", "train.dev_batches=10"]
            overrides += [f"model.{k}={json.dumps(v)}" for k, v in switches.items()]
            cfg = load_config(REPO / "configs" / "blalm-strict-small.yaml", overrides)
            if row == 0:
                prepare_data(cfg.data, cfg.tokenizer, shared, progress=False)
            copy_prepared(shared, cfg.out_dir / "data")
            start = time.perf_counter()
            result = train(cfg, progress=False, overwrite=True)
            seconds = time.perf_counter() - start
            losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
                      if '"loss"' in line]
            first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
            print(f"| {name} | {first:.3f} | {last:.3f} | {result.final_dev_loss:.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
