"""One optimizer step over this process's share of a global batch: precision (autocast, fp16
scaler), micro-batches, gradient checkpointing, `torch.compile`, DistributedDataParallel, clipping,
the optimizer families and the learning-rate schedule. `build_stepper` assembles it from a config;
the batch arithmetic is the config's (`TrainSection.batch`), and `Stepper.split` is the one place a
step's rows are cut into this process's micro-batches."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Batch, RunConfig
from . import distributed
from .optim import LRSchedule, Optimizers, build_optimizer, build_scheduler
from .precision import autocast, cuda_fits, grad_scaler, resolve_precision


@dataclass
class Stepper:
    """One optimizer step over this process's share of a global batch (see `build_stepper`)."""

    model: torch.nn.Module  # the plain model (checkpoints, evaluation)
    forward: torch.nn.Module  # what runs the forward pass: the model, maybe DDP-wrapped and compiled
    optimizer: Optimizers
    scheduler: LRSchedule
    scaler: torch.amp.GradScaler | None
    precision: str
    device: torch.device
    batch: Batch  # this run's batch: global, per process, micro, passes per step
    rank: int
    grad_clip: float
    ddp: bool

    def split(self, rows: np.ndarray) -> list[torch.Tensor]:
        """This process's contiguous slice of a step's global batch of token rows, as micro-batches on the device."""
        batch = self.batch
        if len(rows) != batch.size:
            raise ValueError(f"a step's batch holds {batch.size} rows (train.batch_size x train.grad_accum), got {len(rows)}")
        mine = rows[self.rank * batch.per_rank : (self.rank + 1) * batch.per_rank]
        return [self.load(micro) for micro in np.split(mine, batch.accumulation)]

    def load(self, tokens: np.ndarray) -> torch.Tensor:
        """Token rows -> int64 tensor on the device (pinned + non-blocking copy on CUDA)."""
        x = torch.from_numpy(tokens.astype(np.int64))
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def __call__(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """Forward/backward each micro-batch, clip, step; returns the mean loss (a device tensor, no sync)."""
        total = torch.zeros((), device=self.device)
        for i, x in enumerate(batch):
            sync = i == len(batch) - 1
            with self.forward.no_sync() if self.ddp and not sync else contextlib.nullcontext():
                with autocast(self.precision, self.device):
                    loss = self.forward(input_ids=x, labels=x).loss / len(batch)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach().float()
        if self.scaler:
            for opt in self.optimizer.optimizers.values():
                self.scaler.unscale_(opt)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler:
            for opt in self.optimizer.optimizers.values():
                self.scaler.step(opt)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total


def build_stepper(cfg: RunConfig, model, device: torch.device, ctx: distributed.Dist, total_steps: int, seq_len: int) -> Stepper:
    """Optimizers, schedule, precision, micro-batch, gradient checkpointing, compile and DDP for `model`."""
    precision = resolve_precision(cfg.train.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.train.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    fits = cuda_fits(model, seq_len, model.config.vocab_size, precision, device) if device.type == "cuda" else None
    batch = cfg.train.batch(ctx.world_size, fits)
    batch = dataclasses.replace(batch, micro=distributed.minimum(batch.micro, ctx, device))  # every process the same
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, total_steps, cfg.schedule)
    forward = model
    if ctx.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        forward = torch.compile(forward)
    return Stepper(model, forward, optimizer, scheduler, grad_scaler(precision, device), precision, device, batch,
                   ctx.rank, cfg.optim.grad_clip, ctx.enabled)
