"""Precision (autocast, fp16 grad scaling) and the memory probe behind the automatic micro-batch size
(`TrainSection.batch` chooses it)."""

from __future__ import annotations

import contextlib

import torch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """auto -> bf16 on CUDA, fp32 elsewhere."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def autocast(precision: str, device: torch.device):
    """Mixed-precision context for forward passes (weights and optimizer state stay fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling to keep small gradients from underflowing; bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def cuda_fits(model, seq_len: int, vocab_size: int, precision: str, device: torch.device):
    """A probe: does one forward + backward of `micro` sequences fit in GPU memory?"""

    def fits(micro: int) -> bool:
        x = torch.randint(0, vocab_size, (micro, seq_len), device=device)
        try:
            with autocast(precision, device):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.cuda.synchronize(device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)
            loss = None
            torch.cuda.empty_cache()

    return fits
