"""Where one step of the serving engine spends its time: N sequences decoding together, in this process.

    python benchmarks/engine_profile.py --sizes demo llama-26m --rows 16 --corpus /work/shared/corpora/babylike_10M

Models as benchmarks/serve_load.py builds them (random weights, --work). For each: `rows` sequences are
prefilled, then 32 decoding steps are timed, split into the forward pass (Engine._forward), picking the tokens
(sampling.pick, temperature 1) and the rest (scheduling, events); then 8 steps under torch.profiler give the
forward's operators by self CPU time (the top 6 and the share of everything else).
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import torch
from torch.profiler import profile

from babblelm.models.registry import names
from serve_load import PROMPTS, SIZES, model_folder


def profile_step(folder: Path, rows: int) -> tuple[dict, list[tuple[str, float]]]:
    from babblelm.generate import load_for_generation
    from babblelm.serve import engine as engine_module
    from babblelm.serve.engine import Engine
    from babblelm.serve.sampling import Sampling

    model, tokenizer = load_for_generation(folder, device="cpu")
    spent = collections.defaultdict(float)

    def timed(name, fn):
        def run(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[name] += time.perf_counter() - start
        return run

    def filled() -> Engine:
        engine = Engine(model, set(), max_batch=rows)
        for i in range(rows):
            ids = tokenizer(PROMPTS[i % len(PROMPTS)]).input_ids
            engine.submit([ids], Sampling(max_new_tokens=1000, temperature=1.0, seed=i))
        while engine.admitted or engine.group:
            engine.step()
        return engine

    forward, pick = Engine._forward, engine_module.pick
    engine = filled()
    for _ in range(8):  # warm-up
        engine.step()
    Engine._forward, engine_module.pick = timed("forward", forward), timed("pick", pick)
    try:
        start = time.perf_counter()
        for _ in range(32):
            engine.step()
        total = (time.perf_counter() - start) / 32
    finally:
        Engine._forward, engine_module.pick = forward, pick
    parts = {"step_ms": 1000 * total, "forward_ms": 1000 * spent["forward"] / 32, "pick_ms": 1000 * spent["pick"] / 32}
    parts["rest_ms"] = parts["step_ms"] - parts["forward_ms"] - parts["pick_ms"]
    with profile() as prof:
        for _ in range(8):
            engine.step()
    ops = sorted(((e.key, e.self_cpu_time_total) for e in prof.key_averages()), key=lambda kv: -kv[1])
    everything = sum(t for _, t in ops)
    top = [(name, t / everything) for name, t in ops[:6]]
    return parts, top + [("other operators", 1 - sum(share for _, share in top))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=names(), help="default: every registered architecture")
    ap.add_argument("--sizes", nargs="+", default=["demo"], choices=list(SIZES))
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--corpus")
    ap.add_argument("--work", default="/tmp/babble-serve-load")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"| model | rows | step (ms) | forward | pick | rest | the forward's operators (share of CPU time) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for size in args.sizes:
        for arch in args.archs:
            parts, ops = profile_step(model_folder(arch, size, work, args.corpus), args.rows)
            shares = ", ".join(f"{name.replace('aten::', '')} {100 * share:.0f}%" for name, share in ops)
            print(f"| {arch} at {size} | {args.rows} | {parts['step_ms']:.1f} | {parts['forward_ms']:.1f} | "
                  f"{parts['pick_ms']:.2f} | {parts['rest_ms']:.2f} | {shares} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
