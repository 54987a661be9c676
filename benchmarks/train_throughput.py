"""Training throughput: tokens/s and peak memory of babblelm's training step for every architecture
preset, against a reference measured in the same run: Hugging Face `LlamaForCausalLM` of the same
shape trained by a plain PyTorch AdamW loop (same batch, sequence length, precision and compile).

    python benchmarks/train_throughput.py                  # CPU: short sequences, few steps
    python benchmarks/train_throughput.py --device cuda    # GPU: the presets' own batch and length, bf16, MFU

Each measurement runs in its own process (so peak memory is its own). Our side is the real
`babblelm.train.stepper.Stepper` (optimizer families, schedule, autocast, clipping, micro-batches);
inputs are random tokens already on the device, so neither side pays for data loading.
Peak memory: torch.cuda.max_memory_allocated on GPU; the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# dense bf16 peak FLOP/s by device name fragment (for MFU)
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def presets() -> list[tuple[str, dict]]:
    """(name, raw config) for each configs/*.yaml, plus a default one for any architecture without a preset."""
    from babblelm.models.registry import DEFAULT_ARCH, names

    found = [(p.stem, yaml.safe_load(p.read_text())) for p in sorted((REPO / "configs").glob("*.yaml"))]
    covered = {raw.get("model", {}).get("arch", DEFAULT_ARCH) for _, raw in found}
    found += [(f"{arch} (defaults)", {"model": {"arch": arch}}) for arch in names() if arch not in covered]
    return found


def _shape(model_cfg) -> dict:
    """The Llama reference's shape, read from our model config (llama-26m's where a field is absent)."""
    get = lambda k, d: getattr(model_cfg, k, None) or d  # noqa: E731
    hidden = get("hidden_size", 384)
    heads = get("num_attention_heads", math.gcd(hidden, 6))  # attention-free models: 6 heads where they divide
    return dict(hidden_size=hidden, num_hidden_layers=get("num_hidden_layers", 6),
                num_attention_heads=heads, intermediate_size=get("intermediate_size", 1536),
                num_key_value_heads=get("num_key_value_heads", None) or heads,
                vocab_size=model_cfg.vocab_size, max_position_embeddings=get("max_position_embeddings", 512),
                tie_word_embeddings=get("tie_word_embeddings", False))


def measure(kind: str, raw: dict, args: dict, queue) -> None:
    """Child process: time `args['steps']` training steps of `kind` ('ours' or 'reference'); an
    exception is sent back as {"error": ...}."""
    try:
        queue.put(_measure(kind, raw, args))
    except Exception as err:  # noqa: BLE001 (reported by the parent)
        queue.put({"error": f"{type(err).__name__}: {err}"})


def _measure(kind: str, raw: dict, args: dict) -> dict:
    import torch

    from babblelm.config import load_config
    from babblelm.models.registry import count_parameters
    from babblelm.train import distributed
    from babblelm.train.stepper import build_stepper
    from babblelm.train.precision import autocast, resolve_precision

    torch.set_num_threads(args["threads"]) if args["threads"] else None
    device = torch.device(args["device"])
    raw = json.loads(json.dumps(raw))
    raw.setdefault("data", {})["corpus"] = "unused"
    raw["data"]["seq_len"] = args["seq_len"]
    train = raw.setdefault("train", {})
    train.update(batch_size=args["batch"], grad_accum=1, micro_batch=args["micro"], precision=args["precision"],
                 compile=args["compile"])
    model_raw = raw.setdefault("model", {})
    if "max_position_embeddings" in model_raw:  # only architectures with a position limit
        model_raw["max_position_embeddings"] = max(args["seq_len"], model_raw["max_position_embeddings"])
    cfg = load_config(raw=raw)
    arch, margs = cfg.model_section
    vocab = cfg.tokenizer.vocab_size
    torch.manual_seed(0)
    ours = arch.model_class(arch.make_config(margs, vocab, 0, 1, 2)).to(device)
    precision = resolve_precision(cfg.train.precision, device)
    total = args["warmup"] + args["steps"]
    if kind == "ours":
        stepper = build_stepper(cfg, ours, device, distributed.Dist(), total, args["seq_len"])
        model, micro = ours, stepper.batch.micro
        step = stepper
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**_shape(ours.config), attn_implementation="sdpa")).to(device)
        del ours
        micro = args["micro_used"]
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=device.type == "cuda" or None)
        fwd = torch.compile(model) if cfg.train.compile else model

        def step(batch):
            for x in batch:
                with autocast(precision, device):
                    loss = fwd(input_ids=x, labels=x).loss / len(batch)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

    n_micro = args["batch"] // micro
    batch = [torch.randint(0, vocab, (micro, args["seq_len"]), device=device) for _ in range(n_micro)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args["warmup"]):
        step(batch)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args["steps"]):
        loss = step(batch)
    float(loss)
    sync()
    seconds = time.perf_counter() - t0
    tokens = args["steps"] * args["batch"] * args["seq_len"]
    n_params = count_parameters(model)
    cfg_m = model.config
    flops_per_token = 6 * (n_params - cfg_m.vocab_size * cfg_m.hidden_size) + 12 * cfg_m.num_hidden_layers * cfg_m.hidden_size * args["seq_len"]
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"kind": kind, "params": n_params, "micro_batch": micro, "tokens_per_s": tokens / seconds,
            "peak_mem_gib": peak / 2**30, "flops_per_token": flops_per_token, "precision": precision}


def run_child(kind: str, raw: dict, args: dict, timeout: float | None = None) -> dict:
    """`measure` in a fresh process; a child that dies (or outlives `timeout` seconds) is an error."""
    import queue as queues

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(kind, raw, args, queue))
    proc.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except queues.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the {kind} measurement process died (exit code {proc.exitcode})") from None
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"the {kind} measurement outlived {timeout:.0f} s") from None
    proc.join()
    if "error" in result:
        raise RuntimeError(f"the {kind} measurement failed: {result['error']}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--steps", type=int, help="timed steps (CPU default 5, GPU 50)")
    p.add_argument("--warmup", type=int, help="untimed steps first (CPU 2, GPU 10; compile happens here)")
    p.add_argument("--seq-len", type=int, help="CPU default 128; GPU default: the preset's data.seq_len")
    p.add_argument("--batch", type=int, help="sequences per step (CPU 8; GPU: the preset's global batch)")
    p.add_argument("--micro", type=int, help="micro-batch (default: auto on GPU, the whole batch on CPU)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on for GPU")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: torch's default)")
    p.add_argument("--only", help="run only presets whose name contains this")
    p.add_argument("--out", help="write the results as JSON")
    a = p.parse_args()
    import torch

    from babblelm.config import TrainSection
    from babblelm.configbase import from_dict
    from babblelm.models.registry import DEFAULT_ARCH

    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    name = torch.cuda.get_device_name() if gpu else "CPU"
    peak_flops = next((v for k, v in PEAK_BF16.items() if k in name), None) if gpu else None
    print(f"device: {name}; torch {torch.__version__}")
    results = []
    for preset, raw in presets():
        if a.only and a.only not in preset:
            continue
        seq_len = a.seq_len or (raw.get("data", {}).get("seq_len", 512) if gpu else 128)
        batch = a.batch or (from_dict(TrainSection, raw.get("train", {})).global_batch if gpu else 8)
        args = dict(device=device, steps=a.steps or (50 if gpu else 5), warmup=a.warmup or (10 if gpu else 2),
                    seq_len=seq_len, batch=batch, micro=a.micro or (None if gpu else batch), precision=a.precision,
                    compile=gpu if a.compile is None else a.compile, threads=a.threads)
        ours = run_child("ours", raw, args)
        ref = run_child("reference", raw, dict(args, micro_used=ours["micro_batch"]))
        row = {"preset": preset, "arch": raw.get("model", {}).get("arch", DEFAULT_ARCH), **{k: args[k] for k in
               ("seq_len", "batch", "compile", "steps")}, "ours": ours, "reference": ref,
               "ratio": ours["tokens_per_s"] / ref["tokens_per_s"]}
        if peak_flops:
            for side in (ours, ref):
                side["mfu"] = side["tokens_per_s"] * side["flops_per_token"] / peak_flops
        results.append(row)
        mfu = lambda s: f", MFU {s['mfu']:.1%}" if "mfu" in s else ""  # noqa: E731
        print(f"{preset} ({row['arch']}, {ours['params']/1e6:.1f}M params, {batch} x {seq_len} tokens per step, "
              f"micro {ours['micro_batch']}, {ours['precision']}, compile {args['compile']}):\n"
              f"  babblelm : {ours['tokens_per_s']:>12,.0f} tokens/s, peak {ours['peak_mem_gib']:.2f} GiB{mfu(ours)}\n"
              f"  HF Llama : {ref['tokens_per_s']:>12,.0f} tokens/s, peak {ref['peak_mem_gib']:.2f} GiB{mfu(ref)}\n"
              f"  ratio ours/reference: {row['ratio']:.2f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"device": name, "torch": torch.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
