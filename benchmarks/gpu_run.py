"""The GPU acceptance run: one prepared script, in phases, each with its own time budget, each
appending what it measured to `OUT/gpu_run.json` and `OUT/gpu_run.md` as it goes, so a run cut short
still returns everything it measured.

    bash benchmarks/gpu_run.sh                      # on the GPU machine (wheels, archives, then this)
    python benchmarks/gpu_run.py --tiny --out DIR   # the same phases, tiny, on the CPU (the test suite)

- phase 0 (< 1 min): the environment (GPU, torch, triton, transformers, mlstm_kernels) and a
  one-step smoke test of every architecture in bf16 with torch.compile;
- phase 1 (< 3 min): training throughput and peak memory of every preset against Hugging Face
  `LlamaForCausalLM` + plain AdamW of the same shape, measured in the same run (tokens/s, MFU, the
  babblelm/reference ratio; benchmarks/train_throughput.py does the measuring);
- phase 2 (< 5 min): `babble run` of llama-26m on the strict-small corpus prepared on the CPU
  (benchmarks/gpu_prepare.py), 10 epochs with every milestone checkpoint, then BLiMP (the 67
  original files), dev perplexity and the learning curve; then the Conv-Routed Induction LM's
  3.9M reference recipe (configs/conv-induction-3.9m.yaml: 4,000 AdamW steps, its data prepared
  here from the same corpus; at least RESERVED seconds of the phase are kept for it); then BLaLM
  strict-small if time is left.

Inputs come from `.travel/` (made by benchmarks/gpu_prepare.py; git-ignored, it travels with the
working tree when named in the device call's `carry`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAVEL = REPO / ".travel"
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]

PHASE_SECONDS = {"env": 60, "throughput": 180, "strict_small": 300}
RESERVED = {"llama-26m": 110}  # seconds of phase 2 the runs after this one keep
THROUGHPUT_PRESETS = [("llama-26m", []), ("llama-26m-muon-wsd", []),
                      ("blalm-strict-small", ["model.mlstm_backend=mlstm_kernels"]),
                      ("blalm-strict-small", ["model.mlstm_backend=torch"]),
                      ("streammixer-26m", []), ("conv-induction-strict-small", [])]


class Results:
    """The results file pair: JSON (machine) and Markdown (people), rewritten after every record."""

    def __init__(self, out: Path):
        self.out, self.records = out, []
        out.mkdir(parents=True, exist_ok=True)

    def add(self, phase: str, **record) -> None:
        self.records.append({"phase": phase, "time": time.strftime("%H:%M:%S"), **record})
        (self.out / "gpu_run.json").write_text(json.dumps(self.records, indent=2, default=str))
        lines = ["# GPU run", ""]
        for r in self.records:
            fields = ", ".join(f"{k}={_short(v)}" for k, v in r.items() if k not in ("phase", "time"))
            lines.append(f"- [{r['time']}] {r['phase']}: {fields}")
        (self.out / "gpu_run.md").write_text("\n".join(lines) + "\n")
        print(f"[{record.get('what', phase)}] " + ", ".join(f"{k}={_short(v)}" for k, v in record.items()), flush=True)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    text = " ".join(str(value).split())  # one line in the Markdown list
    return text if len(text) < 300 else text[:300] + "..."


def phase_env(results: Results, tiny: bool, deadline: float) -> None:
    import torch
    import transformers

    from babblelm.models.mlstm import mlstm_kernels_available

    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("triton", "mlstm_kernels"):
        try:
            versions[name] = __import__(name).__version__
        except Exception as err:  # noqa: BLE001 (recorded, not fatal)
            versions[name] = f"not available ({type(err).__name__})"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    results.add("env", what="environment", gpu=gpu, mlstm_kernels_usable=mlstm_kernels_available(), **versions)
    for arch in _arch_names():
        if time.monotonic() > deadline:
            results.add("env", what="smoke", arch=arch, status="not run: phase budget spent")
            continue
        results.add("env", what="smoke", arch=arch, **_smoke(arch, tiny))


def _arch_names() -> list[str]:
    from babblelm.models.registry import names

    return names()


def _smoke(arch: str, tiny: bool) -> dict:
    """One compiled training step of a small model of `arch` (bf16 on CUDA), timed."""
    import torch

    from babblelm.config import load_config
    from babblelm.models.registry import get
    from babblelm.train import distributed
    from babblelm.train.stepper import build_stepper

    start = time.perf_counter()
    try:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        section = get(arch).demo_section(64, 2) if tiny else get(arch).demo_section(256, 4)
        raw = {"data": {"corpus": "unused", "seq_len": 64 if tiny else 256}, "model": section,
               "train": {"batch_size": 4, "grad_accum": 1, "micro_batch": 4, "compile": not tiny,
                         "precision": "auto"}, "tokenizer": {"vocab_size": 512}}
        if "max_position_embeddings" in section:
            section["max_position_embeddings"] = raw["data"]["seq_len"]
        cfg = load_config(raw=raw)
        arch_, args = get(arch), cfg.model_args
        model = arch_.model_class(arch_.make_config(args, 512, 0, 1, 2)).to(device)
        stepper = build_stepper(cfg, model, device, distributed.Dist(), 2, raw["data"]["seq_len"])
        batch = [torch.randint(0, 512, (4, raw["data"]["seq_len"]), device=device)]
        loss = float(stepper(batch))
        return {"status": "ok" if loss == loss else "nan loss", "loss": loss, "precision": stepper.precision,
                "compiled": cfg.train.compile, "seconds": time.perf_counter() - start}
    except Exception as err:  # noqa: BLE001 (the point is to record what broke)
        return {"status": "failed", "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-1500:],
                "seconds": time.perf_counter() - start}


def phase_throughput(results: Results, tiny: bool, deadline: float) -> None:
    import torch
    import yaml

    from train_throughput import PEAK_BF16, run_child

    gpu = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if gpu else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if gpu else None
    from babblelm.models.mlstm import mlstm_kernels_available
    from babblelm.models.registry import DEFAULT_ARCH

    kernels = gpu and mlstm_kernels_available()
    for preset, sets in THROUGHPUT_PRESETS:
        if time.monotonic() > deadline:
            results.add("throughput", what="throughput", preset=preset, sets=sets, status="not run: phase budget spent")
            continue
        if "model.mlstm_backend=mlstm_kernels" in sets and not kernels:
            results.add("throughput", what="throughput", preset=preset, sets=sets,
                        status="not run: mlstm_kernels needs CUDA and the mlstm_kernels package")
            continue
        raw = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())
        for item in sets:
            key, value = item.split("=", 1)
            section, field = key.split(".", 1)
            raw.setdefault(section, {})[field] = yaml.safe_load(value)
        if tiny:
            raw["model"] = {**raw["model"], **_tiny_shape(raw["model"].get("arch", DEFAULT_ARCH))}
            raw.setdefault("tokenizer", {})["vocab_size"] = 512
        seq_len = 64 if tiny else raw.get("data", {}).get("seq_len", 512)
        batch = 4 if tiny else raw.get("train", {}).get("batch_size", 16) * raw.get("train", {}).get("grad_accum", 1)
        args = dict(device="cuda" if gpu else "cpu", steps=3 if tiny else 20, warmup=1 if tiny else 5, seq_len=seq_len,
                    batch=batch, micro=batch if tiny else None, precision="auto", compile=gpu, threads=0)
        try:
            ours = run_child("ours", raw, args, timeout=_left(deadline, 10))
            ref = run_child("reference", raw, dict(args, micro_used=ours["micro_batch"]),
                            timeout=_left(deadline, 10))
        except Exception as err:  # noqa: BLE001
            results.add("throughput", what="throughput", preset=preset, sets=sets, status="failed",
                        error=f"{type(err).__name__}: {err}")
            continue
        record = {"preset": preset, "sets": sets, "params": ours["params"], "batch": batch, "seq_len": seq_len,
                  "tokens_per_s": ours["tokens_per_s"], "reference_tokens_per_s": ref["tokens_per_s"],
                  "ratio": ours["tokens_per_s"] / ref["tokens_per_s"], "peak_gib": ours["peak_mem_gib"],
                  "reference_peak_gib": ref["peak_mem_gib"], "precision": ours["precision"], "compile": gpu}
        if peak:
            record["mfu"] = ours["tokens_per_s"] * ours["flops_per_token"] / peak
            record["reference_mfu"] = ref["tokens_per_s"] * ref["flops_per_token"] / peak
        results.add("throughput", what="throughput", status="ok", **record)


def _tiny_shape(arch: str) -> dict:
    from babblelm.models.registry import get

    shape = dict(get(arch).spec.tiny)
    if "max_position_embeddings" in shape:
        shape["max_position_embeddings"] = 64
    return shape


def phase_strict_small(results: Results, tiny: bool, deadline: float, out: Path) -> None:
    """`babble run` of each preset. BLaLM takes llama-26m's data settings, so it reuses the prepared
    data; the induction recipe (its own tokenizer and sequence length) prepares its data here."""
    import yaml

    from babblelm.data.prepare import copy_prepared

    same_data = ["tokenizer.vocab_size=16000", "data.filters=[childes_speaker_tags]", "data.sources={}"]
    runs = [("llama-26m", ["train.epochs=10", "train.compile=true"], False),
            ("conv-induction-3.9m", ["train.steps=80"] if tiny else [], False),
            ("blalm-strict-small", ["train.epochs=10", "train.compile=true", *same_data], True)]
    shared = (out / "tiny-runs" if tiny else TRAVEL / "runs") / "llama-26m" / "data"
    for preset, sets, shares_data in runs:
        left = deadline - time.monotonic() - RESERVED.get(preset, 0) * (0.5 if tiny else 1)
        if left < 30:
            results.add("strict_small", what="babble run", preset=preset, status="not run: phase budget spent")
            continue
        run_dir = (out / "tiny-runs" if tiny else TRAVEL / "runs") / preset
        if shares_data and not (run_dir / "data").exists() and (shared / "manifest.json").is_file():
            copy_prepared(shared, run_dir / "data")
        sets = [*sets, f"run.out_dir={run_dir}", f"data.corpus={_corpus(tiny, out)}", f"eval.data={_blimp(tiny, out)}",
                "eval.tasks=[blimp]", "checkpoints.milestones=babylm"]
        if tiny:
            arch = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())["model"]["arch"]
            sets += [f"model.{k}={json.dumps(v)}" for k, v in _tiny_shape(arch).items()]
            sets += ["tokenizer.vocab_size=400", "data.seq_len=64", "train.epochs=1", "train.compile=false",
                     "checkpoints.scale=0.002", "train.batch_size=8", "train.grad_accum=1", "train.dev_every=20",
                     "train.log_every=5", "data.track=none", "data.filters=[childes_speaker_tags]", "data.sources={}"]
        cmd = [sys.executable, "-m", "babblelm.cli", "run", str(REPO / "configs" / f"{preset}.yaml"), "--no-progress",
               "--set", *sets]
        start = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=None if left == math.inf else max(left, 1),
                                  cwd=REPO, env=env)
            status, tail = ("ok" if proc.returncode == 0 else f"exit {proc.returncode}"), proc.stdout[-3000:] + proc.stderr[-3000:]
        except subprocess.TimeoutExpired as err:
            status, tail = "cut at the phase budget", (err.stdout or b"")[-3000:].decode("utf-8", "replace") if isinstance(err.stdout, bytes) else str(err.stdout)[-3000:]
        results.add("strict_small", what="babble run", preset=preset, status=status, seconds=time.monotonic() - start,
                    **_run_outcome(run_dir), log_tail=tail)


def _run_outcome(run_dir: Path) -> dict:
    """What a (maybe unfinished) run folder holds: steps, words, speed, dev loss, milestones, BLiMP."""
    outcome: dict = {}
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        losses = [r for r in records if "loss" in r]
        devs = [r for r in records if "dev_loss" in r]
        if losses:
            outcome.update(steps=losses[-1]["step"], words=losses[-1].get("words"), train_seconds=losses[-1]["elapsed_s"],
                           tokens_per_s=sum(r["tokens_per_s"] for r in losses[-5:]) / len(losses[-5:]))
        if devs:
            outcome.update(dev_loss=devs[-1]["dev_loss"], dev_ppl=devs[-1].get("dev_ppl"))
    outcome["milestones"] = len(list((run_dir / "checkpoints").glob("chck_*"))) if (run_dir / "checkpoints").is_dir() else 0
    blimp = run_dir / "results" / "final" / "blimp.json"
    if blimp.is_file():
        result = json.loads(blimp.read_text())
        outcome.update(blimp=result["scores"]["blimp"], blimp_pairs=result["n_items"])
    curves = run_dir / "results" / "fast" / "learning_curves.md"
    if curves.is_file():
        outcome["learning_curve"] = curves.read_text()
    return outcome


def _corpus(tiny: bool, out: Path) -> Path:
    if not tiny:
        return Path(".travel") / "corpus"  # relative to the checkout, as gpu_prepare.py prepared it
    folder = out / "tiny-corpus"
    if not folder.is_dir():
        from babblelm.data.synthetic import write_demo_corpus

        write_demo_corpus(folder, words=40_000, seed=0)
    return folder


def _blimp(tiny: bool, out: Path) -> Path:
    if not tiny:
        return TRAVEL / "blimp"
    folder = out / "tiny-blimp"
    if not folder.is_dir():
        from babblelm.data.synthetic import write_minimal_pairs

        write_minimal_pairs(folder, pairs_per_phenomenon=20, seed=1)
    return folder


def _left(deadline: float, floor: float) -> float | None:
    """Seconds until `deadline` (at least `floor`), or None for no deadline."""
    return None if deadline == math.inf else max(deadline - time.monotonic(), floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-run-out"), help="results folder (default: $OUT)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and budgets, on the CPU (the test suite)")
    parser.add_argument("--phases", nargs="+", default=list(PHASE_SECONDS), choices=list(PHASE_SECONDS))
    parser.add_argument("--no-budgets", action="store_true",
                        help="run every phase to its end however long it takes (the test suite: a busy machine "
                             "must not cut a phase)")
    args = parser.parse_args()
    out = Path(args.out)
    results = Results(out)
    scale = math.inf if args.no_budgets else 0.5 if args.tiny else 1.0
    for phase in args.phases:
        deadline = time.monotonic() + PHASE_SECONDS[phase] * scale
        started = time.monotonic()
        try:
            if phase == "env":
                phase_env(results, args.tiny, deadline)
            elif phase == "throughput":
                phase_throughput(results, args.tiny, deadline)
            else:
                phase_strict_small(results, args.tiny, deadline, out)
        except Exception as err:  # noqa: BLE001 (one broken phase must not cost the others)
            results.add(phase, what="phase failed", error=f"{type(err).__name__}: {err}", trace=traceback.format_exc()[-2000:])
        results.add(phase, what="phase done", seconds=time.monotonic() - started)


if __name__ == "__main__":
    main()
