"""Load test of `babble serve`: N concurrent streaming clients on loopback, against the server before continuous
batching and against transformers' own `generate`, in the same run.

    python benchmarks/serve_load.py --archs transformer blalm streammixer induction gpt2 --sizes demo llama-26m \\
        --clients 1 4 16 64 --max-tokens 64 --corpus /work/shared/corpora/babylike_10M
    python benchmarks/serve_load.py --model runs/demo/export --clients 16 --max-tokens 32 --modes engine old

Each mode runs in a subprocess of its own, one after the other, on the same model folder:
- engine: this checkout's server (continuous batching; --max-batch = the most clients);
- engine-1: the same server with one slot (--max-batch 1): one request at a time;
- old: the server of commit 84b6345 (each request one Hugging Face `generate` in a worker thread, one at a time:
  `--max-active 1`), its serve.py and generate.py read from this checkout's git history into a temporary package;
- hf: transformers' `generate` called one request at a time (all clients' requests served in arrival order), no
  HTTP: the floor under any server that runs requests one by one.
Every client sends one request at the same moment (prompt i % 8 of PROMPTS, sampled at temperature 1, streamed
with usage) after one warm-up request. Reported per mode and client count: aggregate completion tokens per
second (all tokens / wall time), time to first token (TTFT) and time per output token after the first (TPOT,
per request), p50 and p95; and the engine's tokens/s over the old server's. Any error fails the run (exit 1).
With --archs/--sizes, randomly initialised models of each architecture are built under --work: "demo" is the
demo's shape (width 128, 4 layers, vocabulary 1024, context 128), "llama-26m" the llama-26m preset's (width 384,
6 layers, 6 heads where the architecture has heads, FFN 1536, vocabulary 16000, context 512), tokenizers trained
on --corpus (default: the demo grammar, whose vocabulary stops short of 16000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "84b6345"
PROMPTS = ["the little dog", "where is the red ball", "she says that the cat is on the mat and", "a",
           "look at the", "do you want to play with the big truck or", "mommy", "and then the bunny went"]
SIZES = {"demo": dict(width=128, layers=4, vocab=1024, context=128),
         "llama-26m": dict(width=384, layers=6, vocab=16000, context=512, heads=6)}


# --- model folders ------------------------------------------------------------------------------------------------


def corpus_lines(corpus: str | None, count: int = 200_000) -> list[str]:
    if corpus is None:
        import random

        from babblelm.data.synthetic import Grammar

        grammar = Grammar(random.Random(0))
        return [" ".join(grammar.utterance()) for _ in range(20_000)]
    lines = []
    for path in sorted(Path(corpus).rglob("*.train")):
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:count // 4]
        if len(lines) >= count:
            break
    return lines[:count]


def model_folder(arch: str, size: str, work: Path, corpus: str | None) -> Path:
    """A randomly initialised `arch` of `size` saved with a tokenizer (built once under `work`)."""
    import torch
    from transformers import AutoTokenizer

    from babblelm.data.tokenizer import train_tokenizer
    from babblelm.models.registry import get

    shape, out = SIZES[size], work / f"{arch}-{size}"
    if (out / "config.json").exists():
        return out
    tokenizer_dir = work / f"tokenizer-{shape['vocab']}"
    if not (tokenizer_dir / "tokenizer.json").exists():
        train_tokenizer(corpus_lines(corpus), vocab_size=shape["vocab"], min_frequency=2, out_dir=tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    section = get(arch).demo_section(shape["width"], shape["layers"])
    section.pop("arch")
    for key, value in (("num_attention_heads", shape.get("heads")), ("max_position_embeddings", shape["context"])):
        if key in section and value is not None:
            section[key] = value
    torch.manual_seed(0)
    config = get(arch).config_class(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **section)
    get(arch).model_class(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --- the servers (subprocesses) -------------------------------------------------------------------------------------


def old_package(work: Path):
    """babblelm's serve.py and generate.py of OLD_COMMIT as the package `babble_old`."""
    import importlib

    folder = work / "old" / "babble_old"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    for name in ("serve", "generate"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:src/babblelm/{name}.py"],
                              check=True, capture_output=True, text=True).stdout
        (folder / f"{name}.py").write_text(text)
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module("babble_old.serve")


def run_server(mode: str, model_path: str, port: int, clients: int, work: Path) -> None:
    import uvicorn

    from babblelm.generate import load_for_generation

    model, tokenizer = load_for_generation(model_path, device="auto")
    if mode.startswith("engine"):
        from babblelm.serve.app import Limits, Server

        slots = 1 if mode == "engine-1" else clients
        Server(model, tokenizer, "bench", Limits(max_batch=slots, max_queue=clients)).run("127.0.0.1", port)
        return
    old = old_package(work)
    server = old.Server(model, tokenizer, "bench", old.Limits(max_active=1, max_queue=clients))
    uvicorn.Server(server.uvicorn_config("127.0.0.1", port)).run()


def run_hf(model_path: str, clients: list[int], max_tokens: int) -> None:
    """transformers' generate, one request at a time: prints one JSON line of results per client count."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    from babblelm.generate import load_for_generation

    model, tokenizer = load_for_generation(model_path, device="auto")

    class Stamps(BaseStreamer):
        def __init__(self):
            self.times, self.prompt_seen = [], False

        def put(self, value):
            if self.prompt_seen:
                self.times.append(time.perf_counter())
            self.prompt_seen = True

        def end(self):
            pass

    def generate(prompt: str, new: int) -> list[float]:
        ids = torch.tensor([tokenizer(prompt).input_ids], device=model.device)
        stamps = Stamps()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=True,
                           temperature=1.0, top_k=0, top_p=1.0, streamer=stamps,
                           pad_token_id=tokenizer.pad_token_id)
        return stamps.times

    generate(PROMPTS[0], 4)  # warm-up
    for n in clients:
        start = time.perf_counter()
        requests = [(start, generate(PROMPTS[i % len(PROMPTS)], max_tokens)) for i in range(n)]
        print(json.dumps(summarise(requests, time.perf_counter() - start, [])), flush=True)


# --- clients --------------------------------------------------------------------------------------------------------

EVENT = re.compile(rb"data: (.*?)\n\n", re.S)


async def one_request(port: int, payload: dict) -> tuple[float, list[float]]:
    """(time sent, times of the events that carried text or a finish reason); the usage event's token count is
    appended as the last element of the list as a negative number."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(payload).encode()
    sent = time.perf_counter()
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    buffer, times, tokens = b"", [], None
    while chunk := await reader.read(65536):
        now = time.perf_counter()
        buffer += chunk
        for match in EVENT.finditer(buffer):
            data = match.group(1)
            if data == b"[DONE]":
                continue
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif any(c["text"] or c["finish_reason"] for c in event["choices"]):
                times.append(now)
        buffer = buffer[buffer.rfind(b"\n\n") + 2:] if b"\n\n" in buffer else buffer
    writer.close()
    if not buffer.startswith(b"") or tokens is None:
        raise RuntimeError(f"no usage in the response (last bytes {buffer[-200:]!r})")
    return sent, times + [-tokens]


async def load(port: int, clients: int, max_tokens: int) -> dict:
    def payload(i: int, tokens: int) -> dict:
        return {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": tokens, "temperature": 1.0, "stream": True,
                "stream_options": {"include_usage": True}}

    await one_request(port, payload(0, 4))  # warm-up
    start = time.perf_counter()
    results = await asyncio.gather(*(one_request(port, payload(i, max_tokens)) for i in range(clients)),
                                   return_exceptions=True)
    wall = time.perf_counter() - start
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    good = [(sent, times[:-1], -times[-1]) for sent, times in (r for r in results if not isinstance(r, BaseException))]
    return summarise([(sent, times) for sent, times, _ in good], wall, errors, [n for *_, n in good])


def summarise(requests: list[tuple[float, list[float]]], wall: float, errors: list[str],
              tokens: list[int] | None = None) -> dict:
    """Aggregate tokens/s, TTFT and TPOT percentiles of (time sent, token/event times) per request."""
    tokens = tokens if tokens is not None else [len(times) for _, times in requests]
    ttft = [times[0] - sent for sent, times in requests if times]
    tpot = [(times[-1] - times[0]) / (n - 1) for (_, times), n in zip(requests, tokens) if len(times) > 1 and n > 1]

    def pct(values, q):
        return float(np.percentile(values, q)) if values else float("nan")

    return {"clients": len(requests) + len(errors), "errors": len(errors), "first_error": errors[0] if errors else None,
            "tokens": int(sum(tokens)), "wall_s": wall, "tokens_per_s": sum(tokens) / wall,
            "ttft_p50": pct(ttft, 50), "ttft_p95": pct(ttft, 95), "tpot_p50": pct(tpot, 50), "tpot_p95": pct(tpot, 95)}


# --- the run --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(mode: str, model: Path, clients: list[int], max_tokens: int, work: Path) -> list[dict]:
    me = [sys.executable, str(Path(__file__).resolve())]
    if mode == "hf":
        out = subprocess.run([*me, "--run-hf", str(model), "--clients", *map(str, clients), "--max-tokens",
                              str(max_tokens)], check=True, capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    port = free_port()
    proc = subprocess.Popen([*me, "--run-server", mode, str(model), "--port", str(port), "--clients",
                             str(max(clients)), "--work", str(work)])
    try:
        deadline = time.time() + 600
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the {mode} server did not start") from None
                time.sleep(0.2)
        return [asyncio.run(load(port, n, max_tokens)) for n in clients]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def table(name: str, results: dict[str, list[dict]]) -> str:
    old = {r["clients"]: r["tokens_per_s"] for r in results.get("old", [])}
    lines = [f"{name}", "", "| server | clients | tokens | tokens/s | x old | TTFT p50 (s) | TTFT p95 (s) | TPOT p50 (ms) "
             "| TPOT p95 (ms) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, rows in results.items():
        for r in rows:
            ratio = f"{r['tokens_per_s'] / old[r['clients']]:.1f}" if r["clients"] in old else ""
            lines.append(f"| {mode} | {r['clients']} | {r['tokens']} | {r['tokens_per_s']:.1f} | {ratio} | "
                         f"{r['ttft_p50']:.3f} | {r['ttft_p95']:.3f} | {1000 * r['tpot_p50']:.1f} | "
                         f"{1000 * r['tpot_p95']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a run, checkpoint or exported folder (instead of --archs/--sizes)")
    ap.add_argument("--archs", nargs="+", default=[])
    ap.add_argument("--sizes", nargs="+", default=["demo"], choices=list(SIZES))
    ap.add_argument("--corpus", help="a BabyLM corpus folder for the tokenizers (default: the demo grammar)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--modes", nargs="+", default=["engine", "old", "hf"], choices=["engine", "engine-1", "old", "hf"])
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "babble-serve-load"))
    ap.add_argument("--out", help="append each model's results as a JSON line to this file")
    ap.add_argument("--run-server", nargs=2, metavar=("MODE", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--run-hf", metavar="MODEL", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.run_server:
        run_server(args.run_server[0], args.run_server[1], args.port, max(args.clients), work)
        return 0
    if args.run_hf:
        run_hf(args.run_hf, args.clients, args.max_tokens)
        return 0
    models = ([(Path(args.model).name, Path(args.model))] if args.model else
              [(f"{arch} at {size}", model_folder(arch, size, work, args.corpus)) for size in args.sizes
               for arch in args.archs])
    failed = False
    for name, folder in models:
        results = {mode: measure(mode, folder, args.clients, args.max_tokens, work) for mode in args.modes}
        print(table(f"{name} ({args.max_tokens} tokens per client)", results), "\n", flush=True)
        for rows in results.values():
            for r in rows:
                if r["errors"]:
                    print(f"first error: {r['first_error']}", file=sys.stderr)
                    failed = True
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"model": name, "max_tokens": args.max_tokens, "results": results}) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
