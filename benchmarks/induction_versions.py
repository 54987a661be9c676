"""CPU speed of the Conv-Routed Induction LM as it is now (the reference implementation's function)
against the module it replaced, read from git (`src/babblelm/models/induction.py` at e71463a):
one training step (forward, loss, backward) of the whole model and of the dynamic convolution
alone, and cached decoding (time per generated token).

    python benchmarks/induction_versions.py                       # the released shape: d 384, 3 layers, vocab 8,000
    python benchmarks/induction_versions.py --hidden 192 --ffn 768   # the 3.9M recipe's shape

The old module is loaded from git into a temporary folder as `babblelm.models.induction_old` (it
imports the current `layers.py`, which still has everything it used). Both models get the same
shape and random inputs; each figure is the median of `--repeats` runs after a warm-up, in this
process, with torch's default thread count. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import babblelm.models
from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM
from babblelm.models.layers import CACHE_ARG
from babblelm.models.registry import count_parameters

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "e71463a"


def old_module():
    """The induction module of OLD_COMMIT, importable as babblelm.models.induction_old."""
    folder = Path(tempfile.mkdtemp(prefix="induction_old_"))
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:src/babblelm/models/induction.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    (folder / "induction_old.py").write_text(source)
    shutil.copy(Path(babblelm.models.__file__).parent / "layers.py", folder / "layers.py")
    babblelm.models.__path__.append(str(folder))
    import babblelm.models.induction_old as old

    return old


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step(model, ids):
    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)
    return step


def conv_step(layer, x):
    """Forward and backward of one layer's dynamic convolution (with its pre-norm)."""
    def step():
        out, _ = layer.conv(layer.conv_norm(x), None, None)
        out.sum().backward()
        x.grad = None
        layer.zero_grad(set_to_none=True)
    return step


@torch.no_grad()
def decode_seconds_per_token(model, prompt, new_tokens: int, repeats: int) -> float:
    def run():
        out = model(prompt, use_cache=True)
        cache, token = out.get(CACHE_ARG), out.logits[:, -1:].argmax(-1)
        for _ in range(new_tokens):
            out = model(token, use_cache=True, **{CACHE_ARG: cache})
            token = out.logits[:, -1:].argmax(-1)
    prefill = median_seconds(lambda: model(prompt, use_cache=True), repeats)
    return (median_seconds(run, repeats) - prefill) / new_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--ffn", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    old = old_module()
    shape = dict(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
                 num_hidden_layers=args.layers, num_attention_heads=4, max_position_embeddings=512)
    models = {}
    for name, config_cls, model_cls in [("new", BabbleInductionConfig, BabbleInductionForCausalLM),
                                        (f"old ({OLD_COMMIT})", old.BabbleInductionConfig, old.BabbleInductionForCausalLM)]:
        torch.manual_seed(0)
        models[name] = model_cls(config_cls(**shape))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=generator)
    x = torch.randn(args.batch, args.seq, args.hidden, generator=generator, requires_grad=True)
    prompt = torch.randint(0, args.vocab, (1, args.prompt), generator=generator)
    rows = []
    for name, model in models.items():
        model.train()
        step = median_seconds(train_step(model, ids), args.repeats)
        conv = median_seconds(conv_step(model.model.layers[0], x), args.repeats)
        model.eval()
        decode = decode_seconds_per_token(model, prompt, args.new_tokens, args.repeats)
        rows.append((name, count_parameters(model), step, conv, decode))
        print(f"{name}: {rows[-1]}", flush=True)
    print(f"\nd {args.hidden}, d_ff {args.ffn}, {args.layers} layers, vocab {args.vocab}; training step on "
          f"{args.batch} x {args.seq} tokens; decoding batch 1 after a {args.prompt}-token prompt, {args.new_tokens} "
          f"tokens; torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| module | parameters | training step (s) | conv fwd+bwd, one layer (ms) | decoding (ms/token) |")
    print("|---|---|---|---|---|")
    for name, params, step, conv, decode in rows:
        print(f"| {name} | {params:,} | {step:.3f} | {conv * 1e3:.1f} | {decode * 1e3:.2f} |")
    new, previous = rows[0], rows[1]
    print(f"| new / old | | {new[2] / previous[2]:.2f} | {new[3] / previous[3]:.2f} | {new[4] / previous[4]:.2f} |")


if __name__ == "__main__":
    main()
