"""Load test of `babble serve`: N concurrent clients on loopback, a bounded number of requests each.

    python benchmarks/serve_load.py MODEL --clients 1 4 8 --requests 8 --max-tokens 32

Starts the server in this process on 127.0.0.1 (a free port), runs each client count with the
official `openai` client, and prints requests/s, generated tokens/s and latency percentiles. The
server's queue is sized to hold every client, so any error is a failure (the script exits 1).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time

import numpy as np


def start_server(model_path: str, clients: int, max_active: int):
    import uvicorn

    from babblelm.generate import load_for_generation
    from babblelm.serve import Limits, Server

    model, tokenizer = load_for_generation(model_path, device="auto")
    served = Server(model, tokenizer, "bench", Limits(max_active=max_active, max_queue=clients))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(served.uvicorn_config("127.0.0.1", port))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def run_load(base_url: str, clients: int, requests: int, max_tokens: int, prompt: str) -> dict:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    latencies, tokens, errors = [], [], []
    lock = threading.Lock()

    def worker():
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                r = client.completions.create(model="bench", prompt=prompt, max_tokens=max_tokens, temperature=1.0)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    tokens.append(r.usage.completion_tokens)
            except Exception as err:  # counted and reported; the run fails
                with lock:
                    errors.append(repr(err))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies else (float("nan"),) * 3
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "wall_s": wall,
            "req_per_s": len(latencies) / wall, "tokens_per_s": sum(tokens) / wall,
            "p50_s": p50, "p95_s": p95, "p99_s": p99, "first_error": errors[0] if errors else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="run folder, checkpoint folder or exported folder")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--requests", type=int, default=8, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-active", type=int, default=1, help="server generations at once")
    ap.add_argument("--prompt", default="the little dog")
    args = ap.parse_args()

    server, url = start_server(args.model, max(args.clients), args.max_active)
    print("| clients | requests | errors | req/s | tokens/s | p50 (s) | p95 (s) | p99 (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    try:
        for n in args.clients:
            r = run_load(url, n, args.requests, args.max_tokens, args.prompt)
            print(f"| {n} | {r['requests']} | {r['errors']} | {r['req_per_s']:.2f} | {r['tokens_per_s']:.1f} | "
                  f"{r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['p99_s']:.3f} |", flush=True)
            if r["errors"]:
                print(f"first error: {r['first_error']}", file=sys.stderr)
                failed = True
    finally:
        server.should_exit = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
