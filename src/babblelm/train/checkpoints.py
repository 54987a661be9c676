"""Checkpoints: Hugging Face folders (safetensors + modeling code + tokenizer) plus the state to resume.

Layout of one checkpoint folder::

    config.json, model.safetensors, <modeling files>, tokenizer files   # loadable with from_pretrained
    trainer_state.json                                                  # step, words, tokens, milestone
    hyperparameters.json                                                # the run's model/optim/schedule/train sections
    resume_state.pt                                                     # optimizer, scheduler, RNG (tensors only)

Writes are atomic: everything goes into a temporary sibling folder `.tmp-<name>-<pid>`, whose
`trainer_state.json` is written last (its presence marks a complete checkpoint); an older
checkpoint of the same name is moved aside to `.old-<name>-<pid>`, the new one renamed into place,
the old one deleted. A process killed anywhere in between leaves folders that `recover` sorts out
before the next run reads the checkpoints: a complete new checkpoint wins, an incomplete one is
deleted, and the old one comes back only if no complete checkpoint of its name remains
(folders.py does the renames and the recovery for every folder babblelm writes whole).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from .. import folders
from ..modelfolder import hf_progress_bars_off
from ..rundir import HYPERPARAMETERS, RESUME_STATE, TRAINER_STATE
HYPERPARAMETER_SECTIONS = ("model", "optim", "schedule", "train")


def hyperparameters(run_config: dict) -> dict:
    """The sections of a resolved run config (as a plain dict) that describe how the model was trained."""
    return {key: run_config[key] for key in HYPERPARAMETER_SECTIONS if key in run_config}


def save_checkpoint(path: Path, model, tokenizer, trainer_state: dict, optimizer=None, scheduler=None, scaler=None,
                    hyperparameters: dict | None = None) -> Path:
    """Write a checkpoint atomically to `path` (replacing an older one of the same name); a failed
    write (a full disk, say) leaves the older one as it was and raises one OSError naming `path`."""
    path = Path(path)
    with folders.written_whole(path, replace=True) as tmp:
        with hf_progress_bars_off():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if hyperparameters is not None:
            (tmp / HYPERPARAMETERS).write_text(json.dumps(hyperparameters, indent=2), encoding="utf-8")
        if optimizer is not None:
            resume = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": _rng_state(),
                "scaler": scaler.state_dict() if scaler is not None else None,
            }
            with open(tmp / RESUME_STATE, "wb") as handle:  # a file object: its OSError stays in the chain
                torch.save(resume, handle)
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")  # last: complete
    return path


def recover(checkpoint_dir: Path) -> list[str]:
    """Finish or undo the checkpoint writes of a process killed mid-save; what was done, as messages.
    Call it only under the run folder's lock: no living process is writing then."""
    return folders.recover(checkpoint_dir, complete=lambda folder: (folder / TRAINER_STATE).is_file(),
                           what="checkpoint write")


def read_trainer_state(path: Path) -> dict:
    file = Path(path) / TRAINER_STATE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: damaged checkpoint state ({err})") from None


def exposure(path: Path) -> tuple[int, str] | None:
    """(what a checkpoint had seen when it was written, its unit): words, or tokens for a multilingual
    run (its milestones count tokens); None for a folder without a readable trainer_state.json."""
    try:
        state = read_trainer_state(path)
    except ValueError:
        return None
    unit = "tokens" if "mixing" in state else "words"
    return (state[f"{unit}_seen"], unit) if isinstance(state.get(f"{unit}_seen"), int) else None


def resumable(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints with resume state, the highest step first."""
    found = [d for d in Path(checkpoint_dir).glob("*") if not d.name.startswith(".") and (d / RESUME_STATE).exists()
             and (d / TRAINER_STATE).exists()]
    return sorted(found, key=lambda d: read_trainer_state(d)["step"], reverse=True)


def latest_resumable(checkpoint_dir: Path) -> Path | None:
    """The checkpoint with resume state and the highest step, or None."""
    found = resumable(checkpoint_dir)
    return found[0] if found else None


def load_resume_state(path: Path, optimizer, scheduler, scaler=None) -> None:
    """Restore optimizer, scheduler, fp16 grad-scaler and RNG states (tensor-only file, loaded with
    weights_only). The optimizer keeps the hyperparameters it was built with from the run's config
    (identical unless resume allowed a change), with the restored moments and step counts."""
    file = Path(path) / RESUME_STATE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (a truncated or foreign file: name it)
        raise ValueError(f"{file}: damaged resume state ({type(err).__name__}: {err})") from None
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)
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
