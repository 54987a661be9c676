"""The training loop: data -> model -> optimizers + schedule -> word-milestone checkpoints -> final model.

    result = train(load_config("configs/llama-26m.yaml"))

A run folder holds `config.yaml` (resolved), `data/` (prepared corpus), `checkpoints/chck_*M`,
`checkpoints/last` (periodic resume point), `checkpoints/final`, and `metrics.jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import RunConfig, save_config
from ..configbase import to_dict
from ..data.blocks import load_blocks
from ..data.prepare import prepare_data
from ..models.registry import count_parameters, parse_model_section
from . import checkpoints as ckpt
from . import distributed
from .optim import LRSchedule, Optimizers, build_optimizer, build_scheduler, describe
from .plan import make_plan, milestone_steps
from .plot import plot_training
from .speed import autocast, cuda_fits, grad_scaler, micro_batch_size, resolve_precision


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path
    steps: int
    words_seen: int
    tokens_seen: int
    final_dev_loss: float | None
    seconds: float
    interrupted: bool = False


class MetricsLog:
    """A run's metrics.jsonl, one JSON record per line, flushed as written; a no-op on ranks other
    than 0 (only rank 0 writes files)."""

    def __init__(self, path: Path, append: bool, enabled: bool):
        self.handle = path.open("a" if append else "w", encoding="utf-8") if enabled else None

    def write(self, record: dict) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(record) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def save_after_step(step: int, final_step: int, first_step: int, milestone_names: list[str], save,
                    save_every: int, stop_after_steps: int | None) -> bool:
    """Write the checkpoints due after `step`: its milestones, the periodic `last` and, when
    --stop-after is reached, the `last` to resume from. True when training should stop here."""
    for name in milestone_names:
        save(name, step, milestone=name)
    if step == final_step:
        return False
    if save_every and (step + 1) % save_every == 0:
        save("last", step)
    if stop_after_steps is not None and step + 1 - first_step >= stop_after_steps:
        save("last", step)
        return True
    return False


def build_model(cfg: RunConfig, tokenizer):
    """A freshly initialised model of the configured architecture, sized to the tokenizer."""
    arch, args = parse_model_section(cfg.model)
    config = arch.make_config(
        args,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    arch.config_class.register_for_auto_class()
    arch.model_class.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(cfg.run.seed)
    return arch.model_class(config)


@torch.inference_mode()
def dev_loss(model, blocks, batch_size: int, max_batches: int, device: torch.device, precision: str = "fp32") -> float:
    """Mean next-token loss over the first `max_batches` dev batches (a fixed subset)."""
    model.eval()
    losses, weights = [], []
    n = min(len(blocks.tokens), batch_size * max_batches)
    for start in range(0, n, batch_size):
        x = torch.from_numpy(blocks.tokens[start : min(n, start + batch_size)].astype(np.int64)).to(device)
        with autocast(precision, device):
            losses.append(model(input_ids=x, labels=x).loss.float().item())
        weights.append(len(x))
    model.train()
    return float(np.average(losses, weights=weights)) if losses else float("nan")


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
    micro_batch: int
    grad_clip: float
    ddp: bool

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
    global_batch = cfg.train.batch_size * cfg.train.grad_accum
    if global_batch % ctx.world_size:
        raise ValueError(f"the global batch (train.batch_size x train.grad_accum = {global_batch}) must be divisible "
                         f"by the number of processes ({ctx.world_size})")
    local_batch = global_batch // ctx.world_size
    micro = micro_batch_size(cfg.train.micro_batch, local_batch, cfg.train.batch_size, device,
                             lambda: cuda_fits(model, seq_len, model.config.vocab_size, precision, device))
    micro = distributed.minimum(micro, ctx, device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, total_steps, cfg.schedule)
    forward = model
    if ctx.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        forward = torch.compile(forward)
    return Stepper(model, forward, optimizer, scheduler, grad_scaler(precision, device), precision, device, micro,
                   cfg.optim.grad_clip, ctx.enabled)


def train(cfg: RunConfig, resume: bool = False, progress: bool = True, stop_after_steps: int | None = None) -> TrainResult:
    """Run (or resume) training as configured; under torchrun, one data-parallel rank of it.
    `stop_after_steps` stops early (saving a resume point), as an interruption would."""
    ctx, device = distributed.setup(cfg.run.device)
    try:
        if cfg.mixing.languages:  # multilingual mixing (TAAM, issue 9): its own data and language sampler
            from .multilingual import train_mixed

            return train_mixed(cfg, ctx, device, resume, progress and ctx.is_main, stop_after_steps)
        return _train(cfg, ctx, device, resume, progress and ctx.is_main, stop_after_steps)
    finally:
        distributed.shutdown(ctx)


def _train(cfg: RunConfig, ctx: distributed.Dist, device: torch.device, resume: bool, progress: bool,
           stop_after_steps: int | None) -> TrainResult:
    run_dir = cfg.out_dir
    ckpt_dir = run_dir / "checkpoints"
    torch.manual_seed(cfg.run.seed)
    if ctx.is_main:  # rank 0 prepares the data; the others then find it cached
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        prepare_data(cfg.data, cfg.tokenizer, run_dir / "data", progress=progress)
    distributed.barrier(ctx)
    manifest = prepare_data(cfg.data, cfg.tokenizer, run_dir / "data", progress=False)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "data" / "tokenizer")
    train_blocks = load_blocks(run_dir / "data", "train")
    dev_blocks = load_blocks(run_dir / "data", "dev")

    global_batch = cfg.train.batch_size * cfg.train.grad_accum
    plan = make_plan(train_blocks.words, global_batch, cfg.train.epochs, cfg.train.words, cfg.run.seed)
    milestones = milestone_steps(plan, cfg.checkpoints.scale) if cfg.checkpoints.milestones == "babylm" else {}
    seq_len = train_blocks.tokens.shape[1]

    model = build_model(cfg, tokenizer).to(device)
    stepper = build_stepper(cfg, model, device, ctx, plan.steps, seq_len)
    optimizer, scheduler, scaler = stepper.optimizer, stepper.scheduler, stepper.scaler
    n_params = count_parameters(model)
    local_batch = global_batch // ctx.world_size

    start_step = 0
    if resume:
        last = ckpt.latest_resumable(ckpt_dir)
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint with resume state under {ckpt_dir}")
        state = ckpt.read_trainer_state(last)
        if state["total_steps"] != plan.steps:
            raise ValueError(
                f"--resume: {last} belongs to a plan of {state['total_steps']} steps but this config plans "
                f"{plan.steps}; resume with the run's own config ({run_dir / 'config.yaml'})"
            )
        with torch.no_grad():
            model.load_state_dict(type(model).from_pretrained(last).state_dict())
        ckpt.load_resume_state(last, optimizer, scheduler, scaler)
        start_step = state["step"] + 1
        if ctx.is_main:
            print(f"resuming from {last} (step {start_step}, {state['words_seen']:,} words seen)")

    if ctx.is_main:
        print(
            f"model: {cfg.model.get('arch', 'transformer')} with {n_params:,} parameters on {device} "
            f"({ctx.world_size} process{'es' if ctx.enabled else ''}, {stepper.precision}"
            f"{', compiled' if cfg.train.compile else ''}{', gradient checkpointing' if cfg.train.gradient_checkpointing else ''}); "
            f"{plan.steps:,} steps of {global_batch} x {seq_len} tokens "
            f"({local_batch // stepper.micro_batch} x {stepper.micro_batch} sequences per process and step); "
            f"{plan.total_words:,} words ({plan.limited_by} budget, {manifest['splits']['train']['words']:,} words per epoch); "
            f"{sum(len(v) for v in milestones.values())} milestone checkpoints"
        )
        print(describe(optimizer))

    def trainer_state(step: int, milestone: str | None = None) -> dict:
        return {
            "step": step,
            "words_seen": plan.words_before(step + 1),
            "tokens_seen": (step + 1) * global_batch * seq_len,
            "epoch": plan.epoch_at(step, len(train_blocks.words)),
            "milestone": milestone,
            "total_steps": plan.steps,
            "n_parameters": n_params,
            "world_size": ctx.world_size,
        }

    hparams = ckpt.hyperparameters(to_dict(cfg))

    def save(name: str, step: int, milestone: str | None = None) -> None:
        if not ctx.is_main:
            return
        ckpt.save_checkpoint(ckpt_dir / name, model, tokenizer, trainer_state(step, milestone), optimizer,
                             scheduler, scaler, hyperparameters=hparams)
        if milestone is not None:
            bar.write(f"checkpoint {name} at {plan.words_before(step + 1):,} words (step {step + 1})")

    def batch_for(step: int) -> list[torch.Tensor]:
        """This rank's slice of the step's blocks, as micro-batches on the device."""
        mine = plan.order[step].reshape(ctx.world_size, local_batch)[ctx.rank]
        return [stepper.load(train_blocks.tokens[np.sort(m)]) for m in np.split(mine, local_batch // stepper.micro_batch)]

    metrics = MetricsLog(run_dir / "metrics.jsonl", append=resume, enabled=ctx.is_main)
    write = metrics.write

    bar = tqdm(
        total=plan.total_words, initial=plan.words_before(start_step), unit="word", unit_scale=True,
        disable=not progress, dynamic_ncols=True, desc="train",
    )
    t0 = time.perf_counter()
    window_t, window_tokens = t0, 0
    last_dev = None
    model.train()
    step = start_step - 1
    interrupted = False
    try:
        for step in range(start_step, plan.steps):
            loss = stepper(batch_for(step))
            words = plan.words_before(step + 1)
            window_tokens += global_batch * seq_len
            bar.update(words - bar.n)
            if (step + 1) % cfg.train.log_every == 0 or step == plan.steps - 1:
                loss_value = distributed.mean(loss, ctx).item()  # the one host sync per logging window
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at step {step}; lower the learning rate or check the data")
                now = time.perf_counter()
                tps = window_tokens / max(now - window_t, 1e-9)
                window_t, window_tokens = now, 0
                lrs = {f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in optimizer.optimizers.items()}
                write({"step": step + 1, "words": words, "tokens": (step + 1) * global_batch * seq_len,
                       "loss": loss_value, "lr": scheduler.get_last_lr()[0], **lrs, "tokens_per_s": tps,
                       "elapsed_s": now - t0,
                       **(model.extra_metrics() if hasattr(model, "extra_metrics") else {})})  # e.g. BLaLM's SWA gates
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tps:,.0f}")
            if ctx.is_main and cfg.train.dev_every and ((step + 1) % cfg.train.dev_every == 0 or step == plan.steps - 1):
                last_dev = dev_loss(model, dev_blocks, cfg.train.batch_size, cfg.train.dev_batches, device, stepper.precision)
                write({"step": step + 1, "words": words, "dev_loss": last_dev, "dev_ppl": math.exp(min(last_dev, 50))})
                bar.write(f"step {step + 1}: dev loss {last_dev:.4f} (ppl {math.exp(min(last_dev, 50)):.2f})")
            if save_after_step(step, plan.steps - 1, start_step, milestones.get(step, []), save, cfg.train.save_every,
                               stop_after_steps):
                interrupted = True
                break
    except KeyboardInterrupt:
        if step >= start_step:
            save("last", step)
            bar.write(f"interrupted: state saved at step {step + 1}; continue with --resume")
        interrupted = True
    finally:
        bar.close()
        metrics.close()

    final_dir = ckpt_dir / "final"
    if not interrupted:
        save("final", plan.steps - 1)
    if ctx.is_main:
        plot_training(run_dir)
    return TrainResult(run_dir, final_dir, step + 1, plan.words_before(step + 1),
                       (step + 1) * global_batch * seq_len, last_dev, time.perf_counter() - t0, interrupted)
