"""The training loop: data -> model -> AdamW + schedule -> word-milestone checkpoints -> final model.

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
from .optim import build_optimizer, build_scheduler
from .plan import make_plan, milestone_steps


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def dev_loss(model, blocks, batch_size: int, max_batches: int, device: torch.device) -> float:
    """Mean next-token loss over the first `max_batches` dev batches (a fixed subset)."""
    model.eval()
    losses, weights = [], []
    n = min(len(blocks.tokens), batch_size * max_batches)
    for start in range(0, n, batch_size):
        x = torch.from_numpy(blocks.tokens[start : min(n, start + batch_size)].astype(np.int64)).to(device)
        with _autocast(device):
            losses.append(model(input_ids=x, labels=x).loss.float().item())
        weights.append(len(x))
    model.train()
    return float(np.average(losses, weights=weights)) if losses else float("nan")


def train(cfg: RunConfig, resume: bool = False, progress: bool = True, stop_after_steps: int | None = None) -> TrainResult:
    """Run (or resume) training as configured. `stop_after_steps` simulates an interruption."""
    run_dir = cfg.out_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    ckpt_dir = run_dir / "checkpoints"
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)

    manifest = prepare_data(cfg.data, cfg.tokenizer, run_dir / "data", progress=progress)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "data" / "tokenizer")
    train_blocks = load_blocks(run_dir / "data", "train")
    dev_blocks = load_blocks(run_dir / "data", "dev")

    global_batch = cfg.train.batch_size * cfg.train.grad_accum
    plan = make_plan(train_blocks.words, global_batch, cfg.train.epochs, cfg.train.words, cfg.run.seed)
    milestones = milestone_steps(plan, cfg.checkpoints.scale) if cfg.checkpoints.milestones == "babylm" else {}

    model = build_model(cfg, tokenizer).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, plan.steps, cfg.schedule)
    n_params = count_parameters(model)

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
        model.load_state_dict(type(model).from_pretrained(last).state_dict())
        ckpt.load_resume_state(last, optimizer, scheduler)
        start_step = state["step"] + 1
        print(f"resuming from {last} (step {start_step}, {state['words_seen']:,} words seen)")

    seq_len = train_blocks.tokens.shape[1]
    print(
        f"model: {cfg.model.get('arch', 'transformer')} with {n_params:,} parameters on {device}; "
        f"{plan.steps:,} steps of {global_batch} x {seq_len} tokens; "
        f"{plan.total_words:,} words ({plan.limited_by} budget, {manifest['splits']['train']['words']:,} words per epoch); "
        f"{sum(len(v) for v in milestones.values())} milestone checkpoints"
    )

    def trainer_state(step: int, milestone: str | None = None) -> dict:
        return {
            "step": step,
            "words_seen": plan.words_before(step + 1),
            "tokens_seen": (step + 1) * global_batch * seq_len,
            "epoch": plan.epoch_at(step, len(train_blocks.words)),
            "milestone": milestone,
            "total_steps": plan.steps,
            "n_parameters": n_params,
        }

    hparams = ckpt.hyperparameters(to_dict(cfg))

    def save(name: str, step: int, milestone: str | None = None) -> Path:
        return ckpt.save_checkpoint(ckpt_dir / name, model, tokenizer, trainer_state(step, milestone), optimizer, scheduler,
                                    hyperparameters=hparams)

    metrics_path = run_dir / "metrics.jsonl"
    metrics = metrics_path.open("a" if resume else "w", encoding="utf-8")
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
            loss_sum = 0.0
            for micro in np.split(plan.order[step], cfg.train.grad_accum):
                x = torch.from_numpy(train_blocks.tokens[np.sort(micro)].astype(np.int64)).to(device, non_blocking=True)
                with _autocast(device):
                    loss = model(input_ids=x, labels=x).loss / cfg.train.grad_accum
                loss.backward()
                loss_sum += loss.item()
            if not math.isfinite(loss_sum):
                raise FloatingPointError(f"loss became {loss_sum} at step {step}; lower optim.lr or check the data")
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            words = plan.words_before(step + 1)
            window_tokens += global_batch * seq_len
            bar.update(words - bar.n)
            if (step + 1) % cfg.train.log_every == 0 or step == plan.steps - 1:
                now = time.perf_counter()
                tps = window_tokens / max(now - window_t, 1e-9)
                window_t, window_tokens = now, 0
                record = {"step": step + 1, "words": words, "tokens": (step + 1) * global_batch * seq_len,
                          "loss": loss_sum, "lr": scheduler.get_last_lr()[0], "tokens_per_s": tps,
                          "elapsed_s": now - t0}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tps:,.0f}")
            if cfg.train.dev_every and ((step + 1) % cfg.train.dev_every == 0 or step == plan.steps - 1):
                last_dev = dev_loss(model, dev_blocks, cfg.train.batch_size, cfg.train.dev_batches, device)
                metrics.write(json.dumps({"step": step + 1, "words": words, "dev_loss": last_dev,
                                          "dev_ppl": math.exp(min(last_dev, 50))}) + "\n")
                metrics.flush()
                bar.write(f"step {step + 1}: dev loss {last_dev:.4f} (ppl {math.exp(min(last_dev, 50)):.2f})")
            for name in milestones.get(step, []):
                save(name, step, milestone=name)
                bar.write(f"checkpoint {name} at {words:,} words (step {step + 1})")
            if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step != plan.steps - 1:
                save("last", step)
            if stop_after_steps is not None and step + 1 - start_step >= stop_after_steps and step != plan.steps - 1:
                save("last", step)
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
        final_dir = save("final", plan.steps - 1)
    return TrainResult(run_dir, final_dir, step + 1, plan.words_before(step + 1),
                       (step + 1) * global_batch * seq_len, last_dev, time.perf_counter() - t0, interrupted)
