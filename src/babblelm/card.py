"""The model card (README.md of an exported folder), generated from the run that made the model.

Sources, all optional except the model itself and all found through the run folder's layout
(rundir.py): `config.yaml` (training setup), the checkpoint's `trainer_state.json` (steps, words),
`metrics.jsonl` (wall-clock, validation loss), `data/manifest.json` (corpus and the cleaning
filters' reports), the checkpoint's own results (`results/<checkpoint>/`: zero-shot tasks of
`babble eval` and the full stage, `finetune/` of `babble finetune`; `results/fast/<chck_*>/`: the
fast stage), the learning curves (`results/fast/` and `results/`) and the run's other `chck_*`
checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from .config import TrainSection
from .configbase import ConfigError, from_dict
from .importers import IMPORT_RECORD
from .models.registry import count_parameters, get
from .rundir import FINAL, TRAINER_STATE, RunDir, learning_curves


def model_card(src: Path, model, arch_name: str, native: str | None = None) -> str:
    """Markdown for the checkpoint folder `src` holding `model` (an architecture registered as `arch_name`);
    `native`: the transformers class the folder holds (`LlamaForCausalLM`, `GPT2LMHeadModel`), loaded
    without remote code; None when it carries babblelm's modeling code."""
    src = Path(src)
    run = RunDir.of(src)
    cfg = yaml.safe_load(run.config.read_text(encoding="utf-8")) if run else {}
    title = cfg.get("run", {}).get("name", src.name)
    checkpoints = _checkpoints(run) if run else []
    sections = [
        "\n".join(["---", "library_name: transformers", "pipeline_tag: text-generation",
                   "tags: [babylm, babblelm, causal-lm]", "---"]),
        f"# {title}" + (f" ({src.name})" if src.name != FINAL else ""),
        _origin(src, arch_name),
        _details(model, arch_name, native, cfg.get("tokenizer", {})),
        _usage(bool(checkpoints), native),
    ]
    if run:
        mixing = run.mixing_card.read_text(encoding="utf-8") if run.mixing_card.exists() else ""  # TAAM runs
        sections += [_training(run, src, cfg), _data(run), _evaluation(run, src.name), mixing, _checkpoint_list(checkpoints)]
    sections.append(
        "## Limitations\n\nA small model trained on a child-sized corpus: a research artifact for studying "
        "sample-efficient language learning, not a general-purpose assistant. Its text is often ungrammatical "
        "or meaningless, it has no factual knowledge to rely on, and it reproduces the biases of its training text."
    )
    return "\n\n".join(s for s in sections if s) + "\n"


def _origin(src: Path, arch_name: str) -> str:
    """Where the weights come from: trained from scratch, trained on from another model folder
    (`model.init_from`), or converted from another codebase's format (`babble import`)."""
    imported = _read_json(src / IMPORT_RECORD)
    if imported:
        return (f"A {arch_name} causal language model converted by `babble import` from {imported.get('format')} "
                f"(`model_type: {imported.get('model_type')}`); its outputs are those of the original.")
    start = _read_json(src / TRAINER_STATE).get("init_from")
    how = f"starting from the weights of `{start}`" if start else "from scratch"
    return f"A {arch_name} causal language model trained {how} with babblelm under the BabyLM rules."


def _table(rows, header=("", "")) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _details(model, arch_name: str, native: str | None, tokenizer_cfg: dict) -> str:
    config = model.config
    fields = [f.name for f in dataclasses.fields(get(arch_name).args_class)]
    shipped_as = f"`{native}` (native transformers, no remote code)" if native else f"`{type(model).__name__}`"
    kind = "SentencePiece BPE" if tokenizer_cfg.get("kind") == "sentencepiece" else "byte-level BPE"
    rows = [("architecture", f"{arch_name}, shipped as {shipped_as}"), ("parameters", f"{count_parameters(model):,}"),
            ("vocabulary", f"{config.vocab_size:,} ({kind}, BOS prepended)")]
    rows += [(name, getattr(config, name)) for name in fields if hasattr(config, name)]
    return "## Model details\n\n" + _table(rows)


def _usage(has_checkpoints: bool, native: str | None) -> str:
    revision = '  # a checkpoint: add revision="chck_1M"' if has_checkpoints else ""
    remote = "" if native else ", trust_remote_code=True"
    return f"""## How to use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("REPO"{remote}){revision}
tokenizer = AutoTokenizer.from_pretrained("REPO"{remote})
ids = tokenizer("the little dog", return_tensors="pt")
out = model.generate(**ids, max_new_tokens=20, do_sample=True, top_p=0.9)
print(tokenizer.decode(out[0], skip_special_tokens=True))
```

With babblelm installed: `babble generate REPO "the little dog"` streams a continuation, and
`babble serve REPO` serves it through an OpenAI-compatible API (`/v1/completions`)."""


def _metrics(run: RunDir, last_step: int) -> tuple[float | None, float | None]:
    """(wall-clock seconds, latest validation loss) up to `last_step` from metrics.jsonl."""
    elapsed = dev = None
    path = run.metrics
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("step", 0) > last_step:
                break
            elapsed = record.get("elapsed_s", elapsed)
            dev = record.get("dev_loss", dev)
    return elapsed, dev


def _training(run: RunDir, src: Path, cfg: dict) -> str:
    o, s, t, d = (cfg.get(k, {}) for k in ("optim", "schedule", "train", "data"))
    state = _read_json(src / TRAINER_STATE)
    steps = state.get("step", -1) + 1
    elapsed, dev = _metrics(run, steps)
    optimizer = f"{o.get('name')} (lr {o.get('lr')}, betas {o.get('betas')}, eps {o.get('eps')})"
    if o.get("name") == "muon_adamw":
        optimizer += f"; Muon lr {o.get('muon_lr')}, momentum {o.get('muon_momentum')}"
    warmup = s.get("warmup_steps") if s.get("warmup_steps") is not None else f"{s.get('warmup_fraction')} of steps"
    rows = [
        ("optimizer", optimizer),
        ("schedule", f"{s.get('name')}, warmup {warmup}, final lr ratio {s.get('min_lr_ratio')}"),
        ("weight decay", o.get("weight_decay")),
        ("gradient clipping", o.get("grad_clip")),
        ("batch", _batch(t, d.get("seq_len"))),
        ("steps", f"{steps:,} of {state.get('total_steps', steps):,}"),
        ("words seen", f"{state.get('words_seen', 0):,}"),
        ("tokens seen", f"{state.get('tokens_seen', 0):,}"),
        ("epochs", f"{state.get('epoch', 0):.2f}"),
        ("device", f"{cfg.get('run', {}).get('device')} x {state.get('world_size', 1)} process(es)"),
        ("wall-clock", "not recorded" if elapsed is None else f"{elapsed / 60:.1f} min"),
        ("validation loss", _loss_text(dev)),
        ("seed", cfg.get("run", {}).get("seed")),
    ]
    if state.get("init_from"):
        rows.insert(0, ("initial weights", f"`{state['init_from']}` (model.init_from; optimizer and schedule fresh)"))
    return "## Training details\n\n" + _table(rows) + "\n\nAll hyperparameters: `hyperparameters.json`."


def _batch(train: dict, seq_len) -> str:
    """The global batch of a saved `train` section (the config's own arithmetic) x `data.seq_len` tokens."""
    try:
        sequences = from_dict(TrainSection, train).global_batch
    except ConfigError as err:
        return f"not readable from config.yaml ({err})"
    return f"{sequences} sequences x {seq_len} tokens = {sequences * (seq_len or 0):,} tokens per step"


def _loss_text(dev) -> str:
    """A dev loss, or per-language dev losses (multilingual runs), as a table cell."""
    if dev is None:
        return "not recorded"
    if isinstance(dev, dict):
        return ", ".join(f"{lang} {loss:.4f}" for lang, loss in dev.items())
    return f"{dev:.4f}"


def _data(run: RunDir) -> str:
    from .data.blocks import MANIFEST

    manifest = _read_json(run.data / MANIFEST)
    if not manifest:
        return ""
    budget, train = manifest.get("budget", {}), manifest.get("splits", {}).get("train", {})
    text = (f"## Data\n\nTrack: {budget.get('track', '?')}; {train.get('words', 0):,} training words "
            f"({train.get('tokens', 0):,} tokens) from {len(manifest.get('inputs', {}).get('train', []))} file(s).")
    allocations = manifest.get("allocations", {})
    if allocations:
        total, unit = budget.get("max_words") or budget.get("max_bytes"), next(iter(allocations.values())).get("unit")
        how = f"`{budget.get('allocation')}` allocation of {total:,} {unit}" if total else "no budget: all the cleaned text"
        rows = [(name, f"{a.get('available', 0):,} {a.get('unit')}", f"{a.get('words', 0):,}", f"{a.get('lines', 0):,}")
                for name, a in allocations.items()]
        text += (f"\n\nSources ({how}; from `data/manifest.json`):\n\n"
                 + _table(rows, ("source", "available (clean)", "words used", "lines used")))
    filters = manifest.get("filters", {}).get("train", {})
    if not filters:
        return text + "\n\nData cleaning: none (the text was used as read)."
    rows = [(name, f"{r.get('lines_removed', 0):,}", f"{r.get('lines_changed', 0):,}", f"{r.get('words_removed', 0):,}")
            for name, r in filters.items()]
    return (text + "\n\nData cleaning applied (training split, from `data/manifest.json`):\n\n"
            + _table(rows, ("filter", "lines removed", "lines changed", "words removed")))


def _evaluation(run: RunDir, checkpoint: str) -> str:
    """This checkpoint's own scores (full evaluation, other data, fast evaluation, fine-tuning), then the
    learning curves across the run's checkpoints (of the fast stage and of a full evaluation of them)."""
    from .eval.report import read_results
    from .eval.suite import OTHER_DATA

    folder = run.results_of(checkpoint)
    parts = []
    others = sorted(f for f in folder.glob(OTHER_DATA + "*") if f.is_dir())
    for results, heading in [(folder, "### Zero-shot"), *((f, f"### Zero-shot on other data (`{f.name}`)") for f in others),
                             (run.fast_results_of(checkpoint), "### Zero-shot, fast evaluation")]:
        zero_shot = read_results(results)
        if zero_shot:
            parts.append(f"{heading}\n\n{_zero_shot(zero_shot)}")
    finetuned = read_results(run.finetune_results(checkpoint))
    if finetuned:
        rows = [(task, r.get("metric", ""), f"{value:.2f}") for task, r in finetuned.items() for value in r["scores"].values()]
        parts.append("### Fine-tuning\n\n" + _table(rows, ("task", "metric", "score")))
    for results, how in ((run.fast_results, "fast evaluation"), (run.results, "full evaluation")):
        if learning_curves(results).exists():
            parts.append(f"### Across checkpoints ({how})\n\n" + learning_curves(results).read_text(encoding="utf-8").strip())
    return "## Evaluation\n\n" + "\n\n".join(parts) if parts else ""


def _zero_shot(results: dict[str, dict]) -> str:
    """One folder's task results: what they were scored on and how, a table, and what any unofficial task is."""
    from .eval.tasks import TASKS

    data = sorted({Path(r["inputs"]["data"]).name for r in results.values() if r.get("inputs", {}).get("data")})
    rules = sorted({str(r["rules"]) for r in results.values() if r.get("rules")})
    head = "Scored as the official BabyLM pipeline scores causal models"
    head += f", {' and '.join(rules)} rules" if rules else ""
    head += f", on {', '.join(f'`{name}`' for name in data)}." if data else "."
    rows = [(task, name, f"{value:.2f}") for task, r in results.items() for name, value in r["scores"].items()]
    notes = [f"`{task}`: {TASKS[task].about}." for task in results if task in TASKS and TASKS[task].about]
    return "\n\n".join([head, _table(rows, ("task", "score", "value")), *notes])


def _checkpoints(run: RunDir) -> list[tuple[str, dict]]:
    return [(folder.name, _read_json(folder / TRAINER_STATE)) for folder in run.milestones()]


def _checkpoint_list(checkpoints: list[tuple[str, dict]]) -> str:
    if not checkpoints:
        return ""
    rows = [(f"`{name}`", f"{s.get('words_seen', 0):,}", f"{s.get('step', -1) + 1:,}") for name, s in checkpoints]
    return ("## Intermediate checkpoints\n\nEach is a branch of this repository (`revision=\"chck_...\"`), "
            "saved after the first step whose words seen reach the milestone.\n\n"
            + _table(rows, ("revision", "words seen", "step")))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
