"""Open a model folder for evaluation the way the official BabyLM pipeline does."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..device import resolve_device
from ..models.registry import hf_progress_bars_off, register_auto_classes

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_model_and_tokenizer(path, device: str | torch.device = "auto", dtype=None):
    """(model, tokenizer) from a Hugging Face folder: model in eval mode on `device`, right padding.

    `device="auto"` picks CUDA when available, else CPU. `dtype=None` keeps transformers' default
    (as the official pipeline). With no pad token the tokenizer pads with EOS, as the pipeline does.
    """
    folder = _check_folder(Path(path))
    register_auto_classes()
    dtype_kwargs = {} if dtype is None else {"dtype": dtype}
    with hf_progress_bars_off():
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, **dtype_kwargs)
    tokenizer = load_tokenizer(folder)
    return model.to(resolve_device(device)).eval(), tokenizer


def _check_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no config.json; expected a Hugging Face model folder (config.json, weights, tokenizer)"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder}: no tokenizer files; expected one of {', '.join(TOKENIZER_FILES)}")
    return folder


def load_tokenizer(path):
    """The folder's tokenizer with right padding; with no pad token it pads with EOS (as the pipeline).
    babblelm's architectures are registered first, so an export's config needs no remote-code prompt."""
    register_auto_classes()
    tokenizer = AutoTokenizer.from_pretrained(_check_folder(Path(path)), padding_side="right")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
