"""Open a model folder for evaluation the way the official BabyLM pipeline does, checked first
(modelfolder.py: the weights, config.json, the tokenizer; the folder's own code only when trusted)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..device import resolve_device
from ..modelfolder import ModelFolderError, check_tokenizer, load_model, read_config
from ..models.registry import register_auto_classes

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_model_and_tokenizer(path, device: str | torch.device = "auto", dtype=None, trust_remote_code: bool = False):
    """(model, tokenizer) from a Hugging Face folder: model in eval mode on `device`, right padding.

    `device="auto"` picks CUDA when available, else CPU. `dtype=None` keeps transformers' default
    (as the official pipeline). With no pad token the tokenizer pads with EOS, as the pipeline does.
    `trust_remote_code` lets a folder of an architecture neither babblelm nor transformers implements
    run its own code.
    """
    folder = _check_folder(Path(path))
    model = load_model(folder, trust_remote_code=trust_remote_code, **({} if dtype is None else {"dtype": dtype}))
    tokenizer = load_tokenizer(folder, trust_remote_code)
    check_tokenizer(folder, tokenizer, model.config.vocab_size)
    return model.to(resolve_device(device)).eval(), tokenizer


def _check_folder(folder: Path) -> Path:
    read_config(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder}: no tokenizer files; expected one of {', '.join(TOKENIZER_FILES)}")
    return folder


def load_tokenizer(path, trust_remote_code: bool = False):
    """The folder's tokenizer with right padding; with no pad token it pads with EOS (as the pipeline).
    babblelm's architectures are registered first, so an export's config needs no remote-code prompt."""
    from transformers import AutoTokenizer

    folder = _check_folder(Path(path))
    register_auto_classes()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="right", trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 (broken or foreign tokenizer files: name the folder)
        text = " ".join(str(err).split())[:300]
        raise ModelFolderError(f"{folder}: its tokenizer files do not load ({type(err).__name__}: {text})") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
