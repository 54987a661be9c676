"""Export a trained checkpoint as a self-contained Hugging Face folder with a model card.

The folder loads with only torch + transformers installed::

    AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    AutoTokenizer.from_pretrained(out)
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .card import model_card
from .models.registry import arch_for_folder, register_auto_classes
from .train.checkpoints import HYPERPARAMETERS, hyperparameters


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
