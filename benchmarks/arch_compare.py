"""The four architectures side by side at one small size: same data, same token budget, same
optimizer and schedule, then dev loss and BLiMP on a fixed subset.

    python benchmarks/arch_compare.py --corpus ../shared/corpora/babylike_10M [--words 2000000]
                                      [--blimp ../shared/eval/blimp] [--per-file 100]

Each architecture starts from its preset and is shrunk to width 128 with 4 layers (the Stream Mixer
to its own comparable shape); all share one data preparation (seq 128, vocab 4,000 BPE), AdamW at
3e-3 with cosine decay and 5% warm-up, batch 32, so only the token mixer differs. BLiMP uses the first
`--per-file` pairs of each of the 67 files. Prints one Markdown row per architecture.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from babblelm.config import load_config
from babblelm.data.prepare import config_hash, copy_prepared, prepare_data
from babblelm.eval.tasks import evaluate_task
from babblelm.eval.load import load_model_and_tokenizer
from babblelm.models.registry import count_parameters
from babblelm.train.launch import train

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COMMON = ["data.seq_len=128", "data.track=strict-small", "data.filters=[childes_speaker_tags, normalize]",
          "data.sources={}", "tokenizer.vocab_size=4000",
          "optim.name=adamw", "optim.lr=3e-3", "schedule.name=cosine", "schedule.warmup_steps=null",
          "schedule.warmup_fraction=0.05", "schedule.min_lr_ratio=0.1", "train.batch_size=32", "train.grad_accum=1",
          "train.log_every=20", "train.dev_every=100000", "train.dev_batches=20", "train.save_every=0",
          "checkpoints.milestones=none", "run.device=cpu"]
LAYERS = ["model.hidden_size=128", "model.num_hidden_layers=4", "model.intermediate_size=384"]
ARCHITECTURES = {
    "Transformer (llama-26m)": ("llama-26m", LAYERS + ["model.num_attention_heads=4", "model.max_position_embeddings=128"]),
    "BLaLM mLSTM + conv (blalm-strict-small)": ("blalm-strict-small", LAYERS + [
        "model.num_attention_heads=4", "model.max_position_embeddings=128", "model.chunk_size=32"]),
    "Stream Mixer (streammixer-26m)": ("streammixer-26m", LAYERS + [
        "model.num_streams=8", "model.stream_dim=32", "model.num_read_heads=4"]),
    "Conv-Induction (conv-induction-strict-small)": ("conv-induction-strict-small", LAYERS + [
        "model.num_attention_heads=4", "model.max_position_embeddings=128"]),
}


def blimp_subset(blimp_dir: Path, per_file: int, out: Path) -> Path:
    """The first `per_file` lines of every BLiMP file, in a folder of the same layout."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(blimp_dir.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()[:per_file]
        (out / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(SHARED / "corpora" / "babylike_10M"))
    parser.add_argument("--words", type=int, default=2_000_000, help="training words (one pass)")
    parser.add_argument("--blimp", default=str(SHARED / "eval" / "blimp"))
    parser.add_argument("--per-file", type=int, default=100, help="BLiMP pairs per file")
    args = parser.parse_args()
    print("| architecture | parameters | train s | tokens/s | train loss, last 3 logs | dev loss | BLiMP subset % |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        blimp = blimp_subset(Path(args.blimp), args.per_file, Path(tmp) / "blimp")
        shared = Path(tmp) / "data"
        configs = {}
        for row, (name, (preset, shape)) in enumerate(ARCHITECTURES.items()):
            overrides = COMMON + shape + [f"data.corpus={args.corpus}", f"data.max_words={args.words}",
                                          "train.epochs=1", f"run.out_dir={tmp}/run{row}"]
            configs[name] = load_config(REPO / "configs" / f"{preset}.yaml", overrides)
        if len({config_hash(c.data, c.tokenizer) for c in configs.values()}) != 1:
            raise SystemExit("the architectures' data configs differ; COMMON must override every data key")
        first = next(iter(configs.values()))
        prepare_data(first.data, first.tokenizer, shared, progress=False)
        for name, cfg in configs.items():
            copy_prepared(shared, cfg.out_dir / "data")
            result = train(cfg, progress=False, overwrite=True)
            logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
            last = [r["loss"] for r in logs if "loss" in r][-3:]
            final = result.final_dir
            model, tokenizer = load_model_and_tokenizer(final, device="cpu")
            score = evaluate_task(model, tokenizer, "blimp", blimp, batch_size=64)["scores"]["blimp"]
            print(f"| {name} | {count_parameters(model):,} | {result.seconds:.0f} | {result.tokens_seen / result.seconds:,.0f} | "
                  f"{sum(last) / len(last):.3f} | {result.final_dev_loss:.3f} | {score:.2f} |", flush=True)


if __name__ == "__main__":
    main()
