"""Export a trained checkpoint as a self-contained Hugging Face folder with a model card.

The folder loads with only torch + transformers installed::

    AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    AutoTokenizer.from_pretrained(out)
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .models.registry import arch_for_folder, count_parameters, register_auto_classes
from .train.checkpoints import HYPERPARAMETERS, hyperparameters, read_trainer_state


def resolve_checkpoint(path: str | Path, checkpoint: str | None = None) -> Path:
    """A run folder (+ optional checkpoint name) or a checkpoint/model folder -> the model folder."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        name = checkpoint or "final"
        folder = path / "checkpoints" / name
        if not (folder / "config.json").exists():
            have = sorted(d.name for d in (path / "checkpoints").iterdir() if not d.name.startswith("."))
            raise FileNotFoundError(f"{path}: no checkpoint {name!r}; available: {', '.join(have) or 'none'}")
        return folder
    if checkpoint:
        raise ValueError(f"--checkpoint needs a run folder, but {path} has no checkpoints/ folder")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is neither a run folder (with checkpoints/) nor a model folder (with config.json)")
    return path


def run_dir_of(model_dir: Path) -> Path | None:
    """The run folder a checkpoint folder belongs to, if any."""
    run = model_dir.parent.parent
    return run if (run / "config.yaml").exists() and model_dir.parent.name == "checkpoints" else None


def export_model(path: str | Path, out_dir: str | Path, checkpoint: str | None = None) -> Path:
    from transformers import AutoTokenizer, GenerationConfig

    src = resolve_checkpoint(path, checkpoint)
    out = Path(out_dir)
    arch = arch_for_folder(src)
    register_auto_classes()  # the tokenizer loader reads config.json; resolve it to our class, no prompt
    model = arch.model_class.from_pretrained(src)
    tokenizer = AutoTokenizer.from_pretrained(src)
    arch.config_class.register_for_auto_class()
    arch.model_class.register_for_auto_class("AutoModelForCausalLM")
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out / "tokenizer_config.json")
    _write_hyperparameters(src, out / HYPERPARAMETERS)
    (out / "README.md").write_text(model_card(src, model, arch.name), encoding="utf-8")
    if (run := run_dir_of(src)) is not None and (run / "mixing.png").exists():
        (out / "mixing.png").write_bytes((run / "mixing.png").read_bytes())
    return out


def model_card(src: Path, model, arch_name: str) -> str:
    """A Markdown model card from the run's config, data manifest, metrics and results."""
    run = run_dir_of(src)
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if run else {}
    manifest = _read_json(run / "data" / "manifest.json") if run else {}
    state = read_trainer_state(src) if (src / "trainer_state.json").exists() else {}
    c = model.config
    lines = [
        "---", "library_name: transformers", "tags: [babylm, babblelm, causal-lm]", "---", "",
        f"# {cfg.get('run', {}).get('name', src.name)}", "",
        f"A {arch_name} causal language model trained with babblelm under the BabyLM rules.", "",
        "## Model details", "",
        "| | |", "|---|---|",
        f"| architecture | {arch_name} (`{type(model).__name__}`) |",
        f"| parameters | {count_parameters(model):,} |",
    ]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size", "max_position_embeddings"):
        if hasattr(c, key):
            lines.append(f"| {key} | {getattr(c, key)} |")
    lines += [
        "", "## How to use", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("PATH", trust_remote_code=True)',
        'tokenizer = AutoTokenizer.from_pretrained("PATH", trust_remote_code=True)',
        'ids = tokenizer("the little dog", return_tensors="pt")',
        "print(tokenizer.decode(model.generate(**ids, max_new_tokens=20)[0], skip_special_tokens=True))",
        "```", "",
    ]
    if cfg:
        o, s, t = cfg.get("optim", {}), cfg.get("schedule", {}), cfg.get("train", {})
        lines += [
            "## Training", "", "| | |", "|---|---|",
            f"| optimizer | {o.get('name')} lr {o.get('lr')}, betas {o.get('betas')}, weight decay {o.get('weight_decay')}, clip {o.get('grad_clip')} |",
            f"| schedule | {s.get('name')}, warmup {s.get('warmup_steps') if s.get('warmup_steps') is not None else s.get('warmup_fraction')} |",
            f"| batch | {t.get('batch_size')} x {t.get('grad_accum')} accumulation x {cfg.get('data', {}).get('seq_len')} tokens |",
            f"| steps | {state.get('step', -1) + 1:,} |",
            f"| words seen | {state.get('words_seen', 0):,} |",
            f"| tokens seen | {state.get('tokens_seen', 0):,} |",
            f"| epochs | {state.get('epoch', 0):.2f} |",
            "",
        ]
    if manifest:
        lines += ["## Data", "", f"Track: {manifest.get('budget', {}).get('track', '?')}; "
                  f"{manifest.get('splits', {}).get('train', {}).get('words', 0):,} training words; filters: "
                  f"{', '.join(cfg.get('data', {}).get('filters', [])) or 'none'}.", ""]
    results = sorted((run / "results").glob("*.json")) if run else []
    if results:
        lines += ["## Evaluation", "", "| task | score |", "|---|---|"]
        for r in results:
            res = _read_json(r)
            if "accuracy" in res:
                lines.append(f"| {res.get('task', r.stem)} ({r.stem}) | {res['accuracy']:.2f} |")
        lines.append("")
    if run and (run / "mixing.md").exists():  # multilingual mixing (issue 9): final pi, exposures, trajectory
        lines += [(run / "mixing.md").read_text(encoding="utf-8")]
    milestones = sorted((d.name for d in src.parent.glob("chck_*M")), key=lambda n: int(n[5:-1])) if run else []
    if milestones:
        lines += ["## Intermediate checkpoints", "", ", ".join(milestones), ""]
    lines += ["## Limitations", "", "A small model trained on a child-sized corpus: it is a research artifact, "
              "not a general-purpose assistant, and it reproduces the biases of its training text.", ""]
    return "\n".join(lines)


def _portable_tokenizer_config(path: Path) -> None:
    """transformers 5 writes `TokenizersBackend`; name the class that 4.x loaders also know."""
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def _write_hyperparameters(src: Path, path: Path) -> None:
    """The checkpoint's hyperparameters.json, else the one derived from its run's config.yaml."""
    if (src / HYPERPARAMETERS).exists():
        path.write_text((src / HYPERPARAMETERS).read_text(encoding="utf-8"), encoding="utf-8")
    elif (run := run_dir_of(src)) is not None:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        path.write_text(json.dumps(hyperparameters(cfg), indent=2), encoding="utf-8")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
