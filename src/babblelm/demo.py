"""`babble demo`: the whole loop on a laptop CPU, on the embedded demo grammar; a preset of `babble run`.

demo corpus + held-out minimal pairs -> `babble run` of the demo config: data preparation, the pairs
scored by the untrained model (once the data stage has made the tokenizer: the data are prepared once,
by the run), training with word-milestone checkpoints, the pairs scored at every checkpoint and on the
final model, report, Hugging Face export -> a sample from the export.

The pairs are the task `demo_pairs`: sentences of the demo grammar, in BLiMP's format and scored as
BLiMP is, but synthetic and far easier than BLiMP; their accuracy says the loop works, not how good a
model is.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from .config import load_config
from .device import cpu_threads, set_threads
from .models.registry import DEFAULT_ARCH, get
from .rundir import FINAL, RunDir
from .train.checkpoints import read_trainer_state

CONFIG = Path(__file__).parent / "demo.yaml"
TASK = "demo_pairs"  # the demo's evaluation task (eval.tasks in demo.yaml)

# (corpus words, pairs per phenomenon, config overrides) for the full and the quick demo; the quick one
# trains its smaller model on half the words for 4 epochs at a higher rate, so it learns within a minute
SIZES = {
    "full": (300_000, 200, []),
    "quick": (150_000, 50, ["train.epochs=4", "optim.lr=6e-3", "schedule.warmup_steps=10", "checkpoints.scale=0.1"]),
}


def demo_model(arch: str, quick: bool) -> dict:
    """The demo's model section for `arch`: width 128 and 4 layers (quick: 64 and 2), tied embeddings,
    plus what the architecture's registry entry adds (heads, streams, BLaLM's short convolution)."""
    width, layers = (64, 2) if quick else (128, 4)
    return get(arch).demo_section(width, layers)


def demo_config(out: Path, quick: bool, seed: int, arch: str = DEFAULT_ARCH, threads: int | None = None):
    import yaml

    _, _, overrides = SIZES["quick" if quick else "full"]
    raw = {**yaml.safe_load(CONFIG.read_text(encoding="utf-8")), "model": demo_model(arch, quick)}
    return load_config(CONFIG, raw=raw, overrides=[f"run.out_dir={out / 'run'}", f"data.corpus={out / 'corpus'}",
                                                   f"eval.data={out / 'pairs'}", f"run.seed={seed}",
                                                   f"run.name=demo-{arch}", f"run.threads={'null' if threads is None else threads}",
                                                   *overrides])


def run_demo(out: Path, quick: bool = False, seed: int = 0, arch: str = DEFAULT_ARCH, threads: int | None = None) -> dict:
    """The demo corpus and pairs, then `babble run` of the demo config (data; the untrained model's
    accuracy, scored once the data stage has made the tokenizer; training, learning curve, final score,
    report, export) and a sample from the export."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .data import synthetic
    from .data.blocks import TOKENIZER_DIR
    from .eval.report import text_table
    from .eval.suite import evaluate_tasks
    from .run import run_all
    from .train.engine import build_model

    hf_logging.disable_progress_bar()  # keep the demo's own output readable
    t0 = time.perf_counter()
    words, pairs, _ = SIZES["quick" if quick else "full"]
    cfg = demo_config(out, quick, seed, arch, threads)
    print(f"CPU threads: {set_threads(cfg.run.threads)} ({cpu_threads(cfg.run.threads)[1]}; --threads N sets them)")
    run = RunDir(cfg.out_dir)
    print(f"demo corpus: {words:,} words of child-directed English from the embedded grammar")
    stats = synthetic.write_demo_corpus(out / "corpus", words=words, seed=seed)
    counts = synthetic.write_minimal_pairs(out / "pairs", pairs_per_phenomenon=pairs, seed=seed,
                                           exclude=synthetic.training_sentences(out / "corpus"))
    print(f"   {stats['train_words']:,} train / {stats['dev_words']:,} dev words; "
          f"{sum(counts.values()):,} held-out minimal pairs over {len(counts)} phenomena")
    if run.path.exists():  # a rerun of the demo starts over
        shutil.rmtree(run.path)
    run.path.mkdir(parents=True)

    untrained: dict[str, float] = {}

    def score_untrained(stage: str) -> None:
        if stage != "data":
            return
        tokenizer = AutoTokenizer.from_pretrained(run.data / TOKENIZER_DIR)
        model = build_model(cfg, tokenizer).eval()  # the run's initial weights (seeded as training seeds them)
        untrained["score"] = evaluate_tasks(model, tokenizer, [TASK], out / "pairs", out / "untrained",
                                            log=lambda _: None, rules=cfg.eval.rules)[TASK]["scores"][TASK]
        print(f"demo minimal pairs before training: {untrained['score']:.2f}% (chance is 50%)")

    summary = run_all(cfg, progress=True, after_stage=score_untrained)
    before = untrained["score"]
    after = json.loads((run.results_of(FINAL) / f"{TASK}.json").read_text(encoding="utf-8"))
    print(text_table(after))
    hf_dir = run.hf
    hf_model = AutoModelForCausalLM.from_pretrained(hf_dir, trust_remote_code=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(hf_dir, trust_remote_code=True)
    ids = hf_tok("the little dog", return_tensors="pt")
    with torch.inference_mode():
        sample = hf_tok.decode(hf_model.generate(**ids, max_new_tokens=16, do_sample=False)[0], skip_special_tokens=True)
    seconds = time.perf_counter() - t0
    state = read_trainer_state(run.checkpoint(FINAL))
    milestones = [folder.name for folder in run.milestones()]
    print(f"\nsample from the exported model: {sample!r}")
    print(f"\ndemo minimal-pair accuracy ({TASK}; synthetic pairs, not BLiMP): {before:.2f}% before -> "
          f"{after['scores'][TASK]:.2f}% after training ({state['words_seen']:,} words, {state['step'] + 1:,} steps)")
    print("artifacts:")
    for label, path in [("demo corpus", out / "corpus"), ("demo minimal pairs", out / "pairs"),
                        ("prepared data + manifest", run.data), ("training metrics", run.metrics),
                        ("checkpoints", run.checkpoints), ("evaluation results", run.results),
                        ("the model (Hugging Face)", hf_dir)]:
        print(f"  {label:<26} {path}")
    print(f"  milestone checkpoints: {', '.join(milestones) or 'none'} (milestones x {cfg.checkpoints.scale}; "
          "words seen at each: the run's model card)")
    print(f"demo finished in {seconds:.0f}s")
    print(f"next: `babble generate {hf_dir} \"the little dog\"`, `babble serve {hf_dir}`, or train on a real "
          "corpus: `babble run configs/llama-26m.yaml --set data.corpus=PATH eval.data=PATH` (README)")
    return {"before": before, "after": after["scores"][TASK], "seconds": seconds, "hf_dir": str(hf_dir),
            "sample": sample, "milestones": milestones, "run_dir": str(run.path), "summary": summary}
