"""Precision (autocast, fp16 grad scaling) and the automatic micro-batch size."""

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


def divisors_desc(n: int, at_most: int) -> list[int]:
    return [d for d in range(min(n, at_most), 0, -1) if n % d == 0]


def largest_fitting(local_batch: int, fits, at_most: int | None = None) -> int:
    """The largest divisor of `local_batch` (<= at_most) for which `fits(micro)` is true."""
    for micro in divisors_desc(local_batch, at_most or local_batch):
        if fits(micro):
            return micro
    raise RuntimeError("not even a micro-batch of 1 sequence fits in memory: use a smaller model or data.seq_len")


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


def micro_batch_size(requested: int | None, local_batch: int, batch_size: int, device: torch.device, probe) -> int:
    """Sequences per forward pass: `requested` (rounded down to a divisor of the per-process
    batch), else on CUDA the largest that fits (`probe()` builds the fits-predicate), else batch_size."""
    if requested is not None:
        return divisors_desc(local_batch, requested)[0]
    if device.type == "cuda":
        return largest_fitting(local_batch, probe())
    return divisors_desc(local_batch, batch_size)[0]
