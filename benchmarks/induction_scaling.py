"""Forward+backward time and peak memory vs sequence length: Conv-Routed Induction LM against a
Transformer of the same width and depth (by default the preset's: d 384, d_ff 4d, 3 layers,
4 heads, vocab 8,000, tied embeddings).

    python benchmarks/induction_scaling.py --device cuda --lengths 256,1024,4096,16384
    python benchmarks/induction_scaling.py --device cpu --hidden 128 --layers 2 --transformer-max-len 4096

Memory is the peak allocated by the step beyond the model and inputs: `torch.cuda.max_memory_allocated`
on a GPU; on the CPU each measurement runs in a fresh process and reports the growth of its peak RSS.
Both models get max_position_embeddings = the longest length measured. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch

from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM
from babblelm.models.registry import count_parameters
from babblelm.models.transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM



def shape(hidden: int, layers: int, vocab: int, max_len: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                intermediate_size=4 * hidden, tie_word_embeddings=True, max_position_embeddings=max_len)


def build(name: str, dims: dict):
    torch.manual_seed(0)
    if name == "induction":
        return BabbleInductionForCausalLM(BabbleInductionConfig(**dims))
    return BabbleTransformerForCausalLM(BabbleTransformerConfig(**dims))


def measure(name: str, seq: int, batch: int, dims: dict, device: str, repeats: int) -> dict:
    """Median fwd+bwd seconds and peak step memory (MiB) of one model at one length."""
    model = build(name, dims).to(device).train()
    ids = torch.randint(0, dims["vocab_size"], (batch, seq), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)

    def step():
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    step()  # warm-up
    sync()
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024  # KiB on Linux
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"model": name, "seq": seq, "seconds": statistics.median(times), "peak_mib": peak,
            "params": count_parameters(model)}


def _child(queue, *args):
    queue.put(measure(*args))


def run(name, seq, batch, dims, device, repeats) -> dict:
    if device.startswith("cuda"):
        return measure(name, seq, batch, dims, device, repeats)
    ctx = mp.get_context("spawn")  # a fresh process per point, so peak RSS belongs to this point only
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, name, seq, batch, dims, device, repeats))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lengths", default="256,1024,4096,16384")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--transformer-max-len", type=int, default=None, help="skip the Transformer above this length")
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    dims = shape(args.hidden, args.layers, args.vocab, max(lengths))
    rows = {}
    for seq in lengths:
        for name in ("induction", "transformer"):
            if name == "transformer" and args.transformer_max_len and seq > args.transformer_max_len:
                continue
            r = run(name, seq, args.batch, dims, args.device, args.repeats)
            rows[name, seq] = r
            print(f"{name:12s} T={seq:6d}: {r['seconds'] * 1e3:9.1f} ms, peak {r['peak_mib']:8.1f} MiB "
                  f"({r['params']:,} params)", flush=True)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"\nfwd+bwd, batch {args.batch}, d {args.hidden}, {args.layers} layers, vocab {args.vocab}, {dev}, "
          f"torch {torch.__version__}\n")
    print("| T | induction ms | transformer ms | time ratio (ind/tr) | induction MiB | transformer MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for seq in lengths:
        a, b = rows["induction", seq], rows.get(("transformer", seq))
        if b is None:
            print(f"| {seq} | {a['seconds'] * 1e3:.1f} | not run | | {a['peak_mib']:.0f} | not run | |")
            continue
        print(f"| {seq} | {a['seconds'] * 1e3:.1f} | {b['seconds'] * 1e3:.1f} | {a['seconds'] / b['seconds']:.2f} | "
              f"{a['peak_mib']:.0f} | {b['peak_mib']:.0f} | {a['peak_mib'] / max(b['peak_mib'], 1e-9):.2f} |")


if __name__ == "__main__":
    main()
