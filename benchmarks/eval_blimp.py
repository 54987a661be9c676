"""Evaluation speed: BLiMP with a 26M-shaped model, batched vs one sentence at a time (as the
official pipeline's causal loop), and the shared-prefix path on entity-tracking-shaped items
(`--shared-archs transformer blalm streammixer induction` for every architecture).

The model is RANDOMLY INITIALIZED (hidden 384, 6 layers, 6 heads, FFN 1536, untied 16,000-row vocabulary: the
BabyLM-LLaMA-26M shape); speed does not depend on the weights. The tokenizer is a byte-level BPE
trained on the BLiMP sentences themselves. Usage:

    python benchmarks/eval_blimp.py [--blimp ../shared/eval/blimp] [--subset 2000] [--full-batched] [--shared-archs ...]

The one-at-a-time reference is timed on a fixed random subset of pairs (seed 0) and extrapolated
to all pairs; the batched path is timed on the same subset, and on all 67,000 pairs with --full-batched.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers, decoders
from transformers import PreTrainedTokenizerFast

from babblelm.eval.blimp import load_blimp
from babblelm.eval.scoring import score_continuations
from babblelm.models.transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM


def tokenizer_for(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=16000, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def one_at_a_time(model, tokenizer, sentences):
    """The official causal loop's cost: one padded-to-itself forward per sentence (batch of one)."""
    for sentence in sentences:
        score_continuations(model, tokenizer, [("", sentence)], batch_size=1)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--blimp", default=str(Path(__file__).resolve().parents[2] / "shared" / "eval" / "blimp"))
    parser.add_argument("--subset", type=int, default=2000, help="pairs timed one at a time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--full-batched", action="store_true", help="also time all pairs batched")
    parser.add_argument("--shared-archs", nargs="+", default=["transformer"],
                        choices=["transformer", "blalm", "streammixer", "induction"],
                        help="architectures whose shared-prefix speed-up is measured")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pairs = load_blimp(args.blimp)
    tokenizer = tokenizer_for([s for p in pairs for s in (p.good, p.bad)])
    config = BabbleTransformerConfig(vocab_size=max(16000, len(tokenizer)), hidden_size=384, num_hidden_layers=6,
                                     num_attention_heads=6, intermediate_size=1536, max_position_embeddings=512,
                                     tie_word_embeddings=False,
                                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = BabbleTransformerForCausalLM(config).eval()
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters (random init), "
          f"{torch.get_num_threads()} threads, {len(pairs)} pairs in {len({p.uid for p in pairs})} files")
    subset = random.Random(0).sample(pairs, args.subset)
    sentences = [s for p in subset for s in (p.good, p.bad)]
    items = [("", s) for s in sentences]
    single = timed(lambda: one_at_a_time(model, tokenizer, sentences))
    batched = timed(lambda: score_continuations(model, tokenizer, items, batch_size=args.batch_size))
    print(f"subset {args.subset} pairs: one at a time {args.subset / single:.1f} pairs/s, "
          f"batched {args.subset / batched:.1f} pairs/s, ratio {single / batched:.1f}x")
    print(f"extrapolated to {len(pairs)} pairs: one at a time {len(pairs) * single / args.subset / 60:.1f} min, "
          f"batched {len(pairs) * batched / args.subset / 60:.1f} min")
    if args.full_batched:
        every = [("", s) for p in pairs for s in (p.good, p.bad)]
        full = timed(lambda: score_continuations(model, tokenizer, every, batch_size=args.batch_size))
        print(f"all {len(pairs)} pairs batched: {full:.0f} s, {len(pairs) / full:.1f} pairs/s")

    # shared prefix: entity-tracking-shaped items (a long context, 7 short options)
    rng = random.Random(1)
    words = sorted({w for p in pairs for s in (p.good, p.bad) for w in s.split()})
    contexts = [" ".join(rng.choice(words) for _ in range(120)) for _ in range(40)]
    choices = [(c, " " + " ".join(rng.choice(words) for _ in range(3))) for c in contexts for _ in range(7)]
    groups = [k // 7 for k in range(len(choices))]
    for arch in args.shared_archs:
        other = model if arch == "transformer" else build_other(arch, config)
        plain = timed(lambda: score_continuations(other, tokenizer, choices, batch_size=args.batch_size))
        shared = timed(lambda: score_continuations(other, tokenizer, choices, batch_size=args.batch_size, groups=groups))
        a = score_continuations(other, tokenizer, choices[:14])
        b = score_continuations(other, tokenizer, choices[:14], groups=groups[:14])
        print(f"{arch}: shared prefix ({len(contexts)} contexts of ~120 words x 7 options): plain batched {plain:.1f} s, "
              f"shared {shared:.1f} s, ratio {plain / shared:.1f}x, max |diff| {max(abs(x - y) for x, y in zip(a, b)):.1e}")


def build_other(arch: str, config: BabbleTransformerConfig):
    """A random model of another architecture with the Transformer's width, depth and vocabulary."""
    from babblelm.models.blalm import BlalmConfig, BlalmForCausalLM
    from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM
    from babblelm.models.streammixer import StreamMixerConfig, StreamMixerForCausalLM

    shape = {key: getattr(config, key) for key in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                                                    "bos_token_id", "eos_token_id", "pad_token_id")}
    if arch == "blalm":
        return BlalmForCausalLM(BlalmConfig(**shape, num_attention_heads=6, short_conv=True)).eval()
    if arch == "streammixer":
        return StreamMixerForCausalLM(StreamMixerConfig(**shape, num_streams=32, stream_dim=64, num_read_heads=4)).eval()
    return BabbleInductionForCausalLM(BabbleInductionConfig(**shape, num_attention_heads=6, max_position_embeddings=512)).eval()

if __name__ == "__main__":
    main()
