"""`babble demo`: the whole loop on a laptop CPU, on the embedded demo grammar.

demo corpus + held-out minimal pairs -> data preparation -> minimal-pair accuracy of the untrained
model -> training with word-milestone checkpoints -> accuracy after training -> Hugging Face export
-> a generated sample from the exported folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import load_config
from .models.registry import get
from .rundir import RunDir

CONFIG = Path(__file__).parent / "demo.yaml"

# (corpus words, pairs per phenomenon, config overrides) for the full and the quick demo
SIZES = {
    "full": (300_000, 200, []),
    "quick": (60_000, 50, ["train.epochs=1", "checkpoints.scale=0.01"]),
}


def demo_model(arch: str, quick: bool) -> dict:
    """The demo's model section for `arch`: width 128 and 4 layers (quick: 64 and 2), tied embeddings,
    plus what the architecture's registry entry adds (heads, streams, BLaLM's short convolution)."""
    width, layers = (64, 2) if quick else (128, 4)
    return get(arch).demo_section(width, layers)


def demo_config(out: Path, quick: bool, seed: int, arch: str = "transformer"):
    import yaml

    _, _, overrides = SIZES["quick" if quick else "full"]
    raw = {**yaml.safe_load(CONFIG.read_text(encoding="utf-8")), "model": demo_model(arch, quick)}
    return load_config(CONFIG, raw=raw, overrides=[f"run.out_dir={out / 'run'}", f"data.corpus={out / 'corpus'}",
                                          f"run.seed={seed}", f"run.name=demo-{arch}", *overrides])


def run_demo(out: Path, quick: bool = False, seed: int = 0, arch: str = "transformer") -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .data import synthetic
    from .data.prepare import prepare_data
    from .eval.blimp import evaluate_blimp, format_table
    from .export import export_model
    from .train.engine import build_model
    from .train.loop import train

    hf_logging.disable_progress_bar()  # keep the demo's own output readable
    t0 = time.perf_counter()
    words, pairs, _ = SIZES["quick" if quick else "full"]
    cfg = demo_config(out, quick, seed, arch)
    print(f"== 1/6 demo corpus: {words:,} words of child-directed English from the embedded grammar")
    stats = synthetic.write_demo_corpus(out / "corpus", words=words, seed=seed)
    counts = synthetic.write_minimal_pairs(out / "pairs", pairs_per_phenomenon=pairs, seed=seed,
                                           exclude=synthetic.training_sentences(out / "corpus"))
    print(f"   {stats['train_words']:,} train / {stats['dev_words']:,} dev words; "
          f"{sum(counts.values()):,} held-out minimal pairs over {len(counts)} phenomena")

    print("== 2/6 data preparation: speaker tags stripped, BPE tokenizer, token blocks")
    manifest = prepare_data(cfg.data, cfg.tokenizer, cfg.out_dir / "data", progress=False)
    tokenizer = AutoTokenizer.from_pretrained(cfg.out_dir / "data" / "tokenizer")
    print(f"   vocab {len(tokenizer):,}; {manifest['splits']['train']['tokens']:,} train tokens in {manifest['splits']['train']['blocks']:,} blocks")

    print("== 3/6 minimal pairs before training")
    before = evaluate_blimp(build_model(cfg, tokenizer).eval(), tokenizer, out / "pairs")
    print(f"   accuracy {before['accuracy']:.2f}% (chance is 50%)")

    print("== 4/6 training")
    result = train(cfg, progress=True, overwrite=True)  # a rerun of the demo starts over

    print("== 5/6 minimal pairs after training")
    model = AutoModelForCausalLM.from_pretrained(result.final_dir, trust_remote_code=True).eval()
    after = evaluate_blimp(model, tokenizer, out / "pairs")
    print(format_table(after))
    results_dir = cfg.out_dir / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "final_demo_pairs.json").write_text(json.dumps(after, indent=2), encoding="utf-8")

    print("== 6/6 export")
    hf_dir = export_model(cfg.out_dir, out / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(hf_dir, trust_remote_code=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(hf_dir, trust_remote_code=True)
    prompt = "the little dog"
    ids = hf_tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        sample = hf_tok.decode(hf_model.generate(**ids, max_new_tokens=16, do_sample=False)[0], skip_special_tokens=True)
    seconds = time.perf_counter() - t0
    milestones = [folder.name for folder in RunDir(cfg.out_dir).milestones()]
    print(f"\nsample from the exported model: {sample!r}")
    print(f"\nminimal-pair accuracy: {before['accuracy']:.2f}% before -> {after['accuracy']:.2f}% after training "
          f"({result.words_seen:,} words, {result.steps:,} steps, {result.seconds:.0f}s)")
    print("artifacts:")
    for label, path in [("demo corpus", out / "corpus"), ("minimal pairs", out / "pairs"),
                        ("prepared data + manifest", cfg.out_dir / "data"), ("training metrics", cfg.out_dir / "metrics.jsonl"),
                        ("checkpoints", cfg.out_dir / "checkpoints"), ("evaluation results", results_dir),
                        ("Hugging Face folder", hf_dir)]:
        print(f"  {label:<26} {path}")
    print(f"  milestone checkpoints: {', '.join(milestones) or 'none'} (milestones x {cfg.checkpoints.scale})")
    print(f"demo finished in {seconds:.0f}s")
    return {"before": before["accuracy"], "after": after["accuracy"], "seconds": seconds, "hf_dir": str(hf_dir),
            "sample": sample, "milestones": milestones, "run_dir": str(cfg.out_dir)}
