"""Stream Mixer speed: time per generated token at several positions (flat: O(1) state) and training
tokens/s, each against the llama-26m preset measured in the same run.

    python benchmarks/streammixer_decode.py                 # CPU, the two 26M presets
    python benchmarks/streammixer_decode.py --device cuda   # on a GPU

Models are randomly initialised (speed does not depend on the weights). The Transformer gets
max_position_embeddings raised so it can decode at the same positions.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from babblelm.config import load_config
from babblelm.models.registry import count_parameters, parameter_breakdown

REPO = Path(__file__).resolve().parents[1]
CARD_PARAMETERS = 26_247_616


def build(preset: str, device: torch.device, overrides: list[str] = ()):
    cfg = load_config(REPO / "configs" / preset, overrides=list(overrides))
    arch, args = cfg.model_section
    torch.manual_seed(0)
    return arch.model_class(arch.make_config(args, cfg.tokenizer.vocab_size, 0, 1, 2)).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def ms_per_token(model, position: int, new_tokens: int, device: torch.device) -> float:
    """Prefill `position` tokens, then the median time of one greedy decoding step (batch 1)."""
    model.eval()
    ids = torch.randint(3, model.config.vocab_size, (1, position), device=device)
    out = model(ids, use_cache=True, logits_to_keep=1)
    cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    times = []
    for _ in range(new_tokens):
        sync(device)
        t0 = time.perf_counter()
        out = model(token, past_key_values=cache, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def train_tokens_per_s(model, batch: int, seq: int, steps: int, device: torch.device) -> float:
    """Forward + backward + AdamW step on random tokens; the first step is a warm-up."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(3, model.config.vocab_size, (batch, seq), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for i in range(steps + 1):
        if i == 1:
            sync(device)
            t0 = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return batch * seq * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--positions", type=int, nargs="+", default=[100, 1000, 4000])
    p.add_argument("--new-tokens", type=int, default=16, help="decoding steps timed per position")
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-seq", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=3)
    a = p.parse_args()
    device = torch.device(a.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    mixer = build("streammixer-26m.yaml", device)
    n = count_parameters(mixer)
    print("\nstreammixer-26m parameters:")
    for name, count in parameter_breakdown(mixer).items():
        print(f"  {count:>12,}  {name}")
    print(f"  total {n:,}; card {CARD_PARAMETERS:,}; difference {n - CARD_PARAMETERS:+,} ({(n - CARD_PARAMETERS) / CARD_PARAMETERS:+.4%})")

    max_pos = max(a.positions) + a.new_tokens + 1
    llama = build("llama-26m.yaml", device, [f"model.max_position_embeddings={max_pos}"])
    print(f"llama-26m parameters: {count_parameters(llama):,}")

    print(f"\ndecoding, batch 1, median ms per token over {a.new_tokens} tokens")
    print("| position | streammixer-26m | llama-26m (KV cache) | llama / streammixer |")
    print("|---:|---:|---:|---:|")
    for pos in a.positions:
        sm, tr = ms_per_token(mixer, pos, a.new_tokens, device), ms_per_token(llama, pos, a.new_tokens, device)
        print(f"| {pos:,} | {sm:.2f} | {tr:.2f} | {tr / sm:.2f} |")

    print(f"\ntraining, batch {a.train_batch} x {a.train_seq} tokens, {a.train_steps} timed steps (fwd + bwd + AdamW)")
    sm = train_tokens_per_s(mixer, a.train_batch, a.train_seq, a.train_steps, device)
    tr = train_tokens_per_s(build("llama-26m.yaml", device), a.train_batch, a.train_seq, a.train_steps, device)
    print("| model | tokens/s |\n|---|---:|")
    print(f"| streammixer-26m | {sm:,.0f} |\n| llama-26m | {tr:,.0f} |\n| streammixer / llama | {sm / tr:.2f} |")


if __name__ == "__main__":
    main()
