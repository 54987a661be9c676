"""Checkpoints: Hugging Face folders (safetensors + modeling code + tokenizer) plus the state to resume.

Layout of one checkpoint folder::

    config.json, model.safetensors, <modeling files>, tokenizer files   # loadable with from_pretrained
    trainer_state.json                                                  # step, words, tokens, milestone
    hyperparameters.json                                                # the run's model/optim/schedule/train sections
    resume_state.pt                                                     # optimizer, scheduler, RNG (tensors only)

Writes are atomic: everything goes into a temporary sibling folder that is renamed into place,
so a crash never leaves a half-written checkpoint under its final name.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..models.registry import hf_progress_bars_off

TRAINER_STATE = "trainer_state.json"
RESUME_STATE = "resume_state.pt"
HYPERPARAMETERS = "hyperparameters.json"
HYPERPARAMETER_SECTIONS = ("model", "optim", "schedule", "train")


def hyperparameters(run_config: dict) -> dict:
    """The sections of a resolved run config (as a plain dict) that describe how the model was trained."""
    return {key: run_config[key] for key in HYPERPARAMETER_SECTIONS if key in run_config}


def save_checkpoint(path: Path, model, tokenizer, trainer_state: dict, optimizer=None, scheduler=None, scaler=None,
                    hyperparameters: dict | None = None) -> Path:
    """Write a checkpoint atomically to `path` (replacing an older one of the same name)."""
    path = Path(path)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with hf_progress_bars_off():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
        if hyperparameters is not None:
            (tmp / HYPERPARAMETERS).write_text(json.dumps(hyperparameters, indent=2), encoding="utf-8")
        if optimizer is not None:
            resume = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": _rng_state(),
                "scaler": scaler.state_dict() if scaler is not None else None,
            }
            torch.save(resume, tmp / RESUME_STATE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".old-{path.name}-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)
    return path


def read_trainer_state(path: Path) -> dict:
    return json.loads((Path(path) / TRAINER_STATE).read_text(encoding="utf-8"))


def latest_resumable(checkpoint_dir: Path) -> Path | None:
    """The checkpoint with resume state and the highest step, or None."""
    best, best_step = None, -1
    for d in Path(checkpoint_dir).glob("*"):
        if d.name.startswith(".") or not (d / RESUME_STATE).exists() or not (d / TRAINER_STATE).exists():
            continue
        step = read_trainer_state(d)["step"]
        if step > best_step:
            best, best_step = d, step
    return best


def load_resume_state(path: Path, optimizer, scheduler, scaler=None) -> None:
    """Restore optimizer, scheduler, fp16 grad-scaler and RNG states (tensor-only file, loaded with weights_only)."""
    state = torch.load(Path(path) / RESUME_STATE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
