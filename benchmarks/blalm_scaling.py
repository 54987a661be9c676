"""BLaLM (mLSTM chunkwise, alone and with the strict preset's sliding-window attention) vs the
Transformer (SDPA): training-step cost against sequence length and
generation cost per token against position.

    python benchmarks/blalm_scaling.py [--device cpu|cuda] [--lengths 512 1024 2048 4096 8192]

All models have the same small width so the CPU run finishes. For each length one forward+backward
pass of a single sequence is timed (best of --repeats) and its peak memory measured: on CUDA
`max_memory_allocated`, on CPU the process's peak resident set (VmHWM) minus the resident set before
the pass, each measurement in a fresh subprocess. Generation: prefill to a position with the cache,
then time single-token steps there. Prints Markdown tables and the linear-scaling checks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from babblelm.models.blalm import BlalmConfig, BlalmForCausalLM
from babblelm.models.transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM

SHAPE = dict(vocab_size=256, hidden_size=128, num_hidden_layers=1, num_attention_heads=4, intermediate_size=256,
             max_position_embeddings=8192)


def build(kind: str, device: str):
    torch.manual_seed(0)
    if kind == "blalm":
        model = BlalmForCausalLM(BlalmConfig(**SHAPE, chunk_size=64, mlstm_backend="torch"))
    elif kind == "blalm_swa":
        model = BlalmForCausalLM(BlalmConfig(**SHAPE, chunk_size=64, mlstm_backend="torch", swa_window=128,
                                             swa_modulation="bounded"))
    else:
        model = BabbleTransformerForCausalLM(BabbleTransformerConfig(**SHAPE))
    return model.to(device)


def rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def train_step(kind: str, length: int, device: str, repeats: int) -> dict:
    """Best fwd+bwd seconds and peak memory (MiB) for one sequence of `length` tokens."""
    model = build(kind, device).train()
    ids = torch.randint(0, SHAPE["vocab_size"], (1, length), device=device)
    times = []
    for r in range(repeats + 1):  # the first pass warms up and is not timed
        if r == 1:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if device == "cuda" else rss_kib("VmRSS") * 1024
        sync(device)
        t = time.perf_counter()
        model(ids, labels=ids, use_cache=False).loss.backward()
        sync(device)
        times.append(time.perf_counter() - t)
        model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss_kib("VmHWM") * 1024
    return {"seconds": min(times[1:]), "peak_mib": (peak - base) / 2**20}


@torch.no_grad()
def per_token(kind: str, position: int, device: str, steps: int = 20) -> dict:
    """Median seconds per generated token after a prompt of `position` tokens, and the cache size."""
    model = build(kind, device).eval()
    ids = torch.randint(0, SHAPE["vocab_size"], (1, position), device=device)
    cache = model(ids, use_cache=True).past_key_values
    token, times = ids[:, -1:], []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        out = model(token, past_key_values=cache, use_cache=True)
        sync(device)
        times.append(time.perf_counter() - t)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    nbytes = cache.nbytes() if hasattr(cache, "nbytes") else sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    return {"ms_per_token": 1000 * sorted(times)[len(times) // 2], "cache_kib": nbytes / 1024}


def in_subprocess(func: str, *args) -> dict:
    code = f"import json, sys; sys.path.insert(0, {sys.path[0]!r}); import blalm_scaling as b; print(json.dumps(b.{func}(*{args!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--positions", type=int, nargs="+", default=[100, 4000])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, shape {SHAPE}\n")
    kinds = {"blalm": "BLaLM mLSTM chunkwise", "blalm_swa": "BLaLM + SWA 128", "transformer": "Transformer SDPA"}
    rows = {k: [in_subprocess("train_step", k, n, args.device, args.repeats) for n in args.lengths] for k in kinds}
    print("| length | " + " | ".join(f"{v} fwd+bwd s | {v} peak MiB" for v in kinds.values()) + " |")
    print("|---" * (1 + 2 * len(kinds)) + "|")
    for i, n in enumerate(args.lengths):
        print(f"| {n} | " + " | ".join(f"{rows[k][i]['seconds']:.3f} | {rows[k][i]['peak_mib']:.0f}" for k in kinds) + " |")
    growth = args.lengths[-1] / args.lengths[0]
    for k, v in kinds.items():
        ratio = rows[k][-1]["seconds"] / rows[k][0]["seconds"]
        print(f"\n{v}: {growth:.0f}x the length costs {ratio:.1f}x the time", end="")
        if k.startswith("blalm"):
            print(f" (linear-scaling check, <= {1.25 * growth:.0f}x: {'PASS' if ratio <= 1.25 * growth else 'FAIL'})", end="")
    print("\n\n| position | " + " | ".join(f"{v} ms/token | {v} cache KiB" for v in kinds.values()) + " |")
    print("|---" * (1 + 2 * len(kinds)) + "|")
    gen = {k: [in_subprocess("per_token", k, p, args.device) for p in args.positions] for k in kinds}
    for i, p in enumerate(args.positions):
        print(f"| {p} | " + " | ".join(f"{gen[k][i]['ms_per_token']:.2f} | {gen[k][i]['cache_kib']:.0f}" for k in kinds) + " |")
    for k, v in kinds.items():
        print(f"\n{v}: per-token time at {args.positions[-1]} / at {args.positions[0]} = "
              f"{gen[k][-1]['ms_per_token'] / gen[k][0]['ms_per_token']:.2f}x", end="")
    print()


if __name__ == "__main__":
    main()
