"""The structural floor: TAAM with reward v1 starves the hardest language, v2 raises it.

    python benchmarks/taam_floor.py [--out runs/taam_floor] [--tokens 80000] [--eta 0.1]

Three synthetic languages (data/synthlang.py: easy, medium, hard) share a byte-level BPE; a
tiny transformer trains on CPU under TAAM from a uniform start (the reference's eta 0.1,
gamma 0.1, min_pi 0.05), one language per batch, once per reward. Prints the final pi and the
final dev-slice losses of both runs and writes docs/taam_floor.png (pi trajectories side by side;
the dotted line is the floor a starved language sinks to: min_pi + (1 - 3 min_pi) gamma / 3).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from babblelm.config import load_config
from babblelm.data.synthlang import write_synthetic_languages
from babblelm.train.launch import train
from babblelm.train.mixedsource import final_losses, read_mixing_records

REWARDS = ("normalized_excess_loss", "cross_lingual_deficit")
GAMMA, MIN_PI = 0.1, 0.05
FLOOR = MIN_PI + (1 - 3 * MIN_PI) * GAMMA / 3  # pi of a language whose weight has sunk to nothing


def run(out: Path, corpus: Path, reward: str, tokens: int, eta: float) -> list[dict]:
    raw = {
        "run": {"name": reward, "out_dir": str(out / reward), "seed": 7, "device": "cpu"},
        "data": {"corpus": str(corpus), "seq_len": 32, "track": "none", "filters": []},
        "tokenizer": {"vocab_size": 400},
        "model": {"arch": "transformer", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 64, "max_position_embeddings": 32},
        "optim": {"lr": 3e-3}, "schedule": {"warmup_steps": 5},
        "train": {"batch_size": 8, "log_every": 10, "dev_batches": 2, "save_every": 0},
        "checkpoints": {"milestones": "none"},
        "mixing": {"languages": {lang: {"premium": 1.0} for lang in ("easy", "medium", "hard")},
                   "tokens": tokens, "policy": "taam", "prior": "uniform", "reward": reward,
                   "eval_every": 10, "eta": eta, "gamma": GAMMA, "min_pi": MIN_PI, "reward_dev_tokens": 512,
                   "final_dev_tokens": 1024},
    }
    train(load_config(raw=raw), progress=False, overwrite=True)
    return read_mixing_records(out / reward / "metrics.jsonl")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/taam_floor")
    p.add_argument("--tokens", type=int, default=80_000)
    p.add_argument("--eta", type=float, default=0.1)
    p.add_argument("--png", default="docs/taam_floor.png")
    args = p.parse_args()
    out = Path(args.out)
    corpus = out / "corpus"
    write_synthetic_languages(corpus, words=20_000, seed=0)
    results = {}
    for reward in REWARDS:
        start = time.perf_counter()
        results[reward] = run(out, corpus, reward, args.tokens, args.eta)
        last = results[reward][-1]
        print(f"{reward}: {time.perf_counter() - start:.0f} s; final pi "
              + ", ".join(f"{k} {v:.3f}" for k, v in last["pi"].items()) + "; final dev loss "
              + ", ".join(f"{k} {v:.3f}" for k, v in final_losses(last).items()))
    (out / "summary.json").write_text(json.dumps({r: recs[-1] for r, recs in results.items()}, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (reward, records) in zip(axes, results.items()):
        for lang in records[0]["pi"]:
            ax.plot([r["tokens"] for r in records], [r["pi"][lang] for r in records], label=lang)
        ax.axhline(FLOOR, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"TAAM, {reward}")
        ax.set_xlabel("tokens read")
    axes[0].set_ylabel("pi")
    axes[0].legend()
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
