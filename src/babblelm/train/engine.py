"""The training engine: the one loop every run goes through.

    result = Training(cfg, PlanSource, ctx, device, progress=True).run(resume=False)

The engine owns what every run shares: the run folder, the model and its optimizer step, resume
(model, optimizer, schedule, RNG and the data position), the progress bar and messages, logging to
metrics.jsonl, dev evaluation, checkpoints at milestones, periodically (`last`) and at the end,
interruption (SIGINT, SIGTERM or `--stop-after` save an exact resume point between two steps;
interrupts.py) and the final plots. What differs between runs is the data, behind the
`BatchSource` interface: a monolingual corpus read by a word plan (train/plan.py) or the TAAM
language mixer (train/mixedsource.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import interrupts
from ..config import RunConfig, save_config
from ..configbase import to_dict
from ..data.blocks import TOKENIZER_DIR
from ..modelfolder import hf_progress_bars_off, load_model
from ..models.registry import count_parameters, init_folder, register_auto_classes
from ..rundir import FINAL, LAST, RunDir
from . import changes
from . import checkpoints as ckpt
from . import distributed
from .optim import describe
from .plan import init_tokenizer
from .plot import plot_training
from .precision import autocast
from .stepper import Stepper, build_stepper


RESUME_HINT = "`babble train CONFIG --resume` (or `babble run CONFIG`)"


class BatchSource(Protocol):
    """What a run's data gives the engine, built from the manifest that `prepare` returned (once per run, on
    rank 0, before the others start; they read it back with `prepared`, which hashes nothing)."""

    unit: str  # "words" or "tokens": what milestones and the progress bar count
    steps: int  # optimizer steps in the run
    seq_len: int
    milestones: dict[int, list[str]]  # step -> checkpoint names first reached after that step

    @classmethod
    def prepare(cls, cfg: RunConfig, run: RunDir, progress: bool) -> dict: ...  # prepare or reuse; the manifest

    @classmethod
    def prepared(cls, run: RunDir) -> dict: ...  # the manifest `prepare` wrote

    def describe(self) -> str: ...  # the data plan, for the start message

    def batch(self, step: int) -> np.ndarray: ...  # the step's global batch of token rows

    def seen(self, step: int) -> dict: ...  # {"words", "tokens", ...} after steps 0..step

    def due(self, step: int) -> bool: ...  # is a dev evaluation due after `step`?

    def evaluate(self, step: int, measure: Callable) -> tuple[dict, str]: ...  # (metrics record, message)

    def state_dict(self) -> dict: ...  # what resume needs beyond the step

    def load_state_dict(self, state: dict) -> None: ...

    def finish(self) -> float | None: ...  # the source's own outputs (rank 0); the final dev loss


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
    signal: int | None = None  # the SIGINT or SIGTERM that stopped it (or arrived during its last step)


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


def build_model(cfg: RunConfig, tokenizer):
    """A freshly initialised model of the configured architecture, sized to the tokenizer; or, with
    `model.init_from`, that folder's model, whose vocabulary must hold the tokenizer's ids."""
    arch, args = cfg.model_section
    arch.config_class.register_for_auto_class()
    arch.model_class.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(cfg.run.seed)
    folder = init_folder(cfg.model)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if folder is None:
        return arch.model_class(arch.make_config(args, vocab_size=len(tokenizer), **special))
    model = load_model(folder, arch.model_class)
    if init_tokenizer(cfg) is not None:
        from transformers import AutoTokenizer

        register_auto_classes()  # an export's config names a babblelm model type: no remote-code prompt
        if AutoTokenizer.from_pretrained(folder).get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"model.init_from: the run's tokenizer is not the one of {folder}, which its weights "
                             "were trained with (only monolingual runs encode their text with it)")
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"model.init_from: {folder} has a vocabulary of {model.config.vocab_size:,} but the run's "
                         f"tokenizer has {len(tokenizer):,} tokens; set tokenizer.vocab_size to at most "
                         f"{model.config.vocab_size:,}, or give the folder the tokenizer its weights were trained with")
    for name, value in special.items():
        setattr(model.config, name, value)
    return model


@torch.inference_mode()
def dev_loss(model, blocks, batch_size: int, max_blocks: int | None, device: torch.device,
             precision: str = "fp32") -> float:
    """Mean next-token loss over the first `max_blocks` dev blocks (a fixed subset; None: all), `batch_size`
    at a time (`train.dev_blocks` and `train.dev_batch` of a run)."""
    model.eval()
    losses, weights = [], []
    n = len(blocks.tokens) if max_blocks is None else min(len(blocks.tokens), max_blocks)
    for start in range(0, n, batch_size):
        x = torch.from_numpy(blocks.tokens[start : min(n, start + batch_size)].astype(np.int64)).to(device)
        with autocast(precision, device):
            losses.append(model(input_ids=x, labels=x).loss.float().item())
        weights.append(len(x))
    model.train()
    return float(np.average(losses, weights=weights)) if losses else float("nan")


class Training:
    """One run (or one data-parallel rank of it), from its config and its kind of batch source.

    A new run refuses a folder that already holds one, unless `overwrite` (which clears it). A
    resumed run refuses a config that differs from the run's, unless every difference is in
    `allow_changes`; then the change is recorded and applies from the resumed step on. `manifest`: the
    data the caller prepared (`babble run`'s data stage); without it rank 0 prepares them here."""

    def __init__(self, cfg: RunConfig, source_cls, ctx: distributed.Dist, device: torch.device, progress: bool,
                 resume: bool = False, overwrite: bool = False, allow_changes: list[str] | None = None,
                 manifest: dict | None = None):
        from transformers import AutoTokenizer

        self.cfg, self.ctx, self.device, self.progress = cfg, ctx, device, progress
        self.run_dir = RunDir(cfg.out_dir)
        self.changed: dict[str, tuple] = {}  # the config changes a resume applies
        if resume:
            self.changed = self.resumed_changes(allow_changes or [])
        else:
            self.claim_folder(overwrite)
        torch.manual_seed(cfg.run.seed)
        if ctx.is_main:  # rank 0 prepares the data, unless the caller did; the others then read its manifest
            self.run_dir.path.mkdir(parents=True, exist_ok=True)
            if not resume:
                save_config(cfg, self.run_dir.config)
            for message in ckpt.recover(self.run_dir.checkpoints):
                print(message)
            if manifest is None:
                manifest = source_cls.prepare(cfg, self.run_dir, progress)
        distributed.barrier(ctx)
        if manifest is None:
            manifest = source_cls.prepared(self.run_dir)
        self.source: BatchSource = source_cls(cfg, self.run_dir, ctx, manifest)
        self.tokenizer = AutoTokenizer.from_pretrained(self.run_dir.data / TOKENIZER_DIR)
        self.init_from = init_folder(cfg.model)
        self.model = build_model(cfg, self.tokenizer).to(device)
        self.n_parameters = count_parameters(self.model)
        self.stepper: Stepper = build_stepper(cfg, self.model, device, ctx, self.source.steps, self.source.seq_len)
        self.hparams = ckpt.hyperparameters(to_dict(cfg))
        self.arch, args = cfg.model_section
        if self.init_from is not None:  # the shape the folder gave, beside where it came from
            self.hparams["model"] = {**cfg.model, "arch": self.arch.name, **dataclasses.asdict(args)}
        self.bar = None
        self.last_saved: int | None = None  # the step of the newest `last` written by this process

    def resumed_changes(self, allowed: list[str]) -> dict[str, tuple]:
        """The config changes a resume applies ({key: (old, new)}); an error unless each one may change
        and is in `allowed`."""
        run = self.run_dir
        if not run.config.is_file():
            raise FileNotFoundError(f"--resume: {run.path} holds no run (no config.yaml)")
        changed = changes.differences(run, to_dict(self.cfg))
        changes.check(changed, allowed, run.config)
        return changed

    def claim_folder(self, overwrite: bool) -> None:
        """Make the run folder this new run's: refuse one that holds a run, unless `overwrite` (then clear it)."""
        run = self.run_dir
        if run.holds_training():
            if not overwrite:
                raise ValueError(f"{run.path} already holds a run (checkpoints: {', '.join(run.saved()) or 'none'}); "
                                 "continue it with --resume, or start over with --overwrite (deletes it)")
            if self.ctx.is_main:
                run.clear()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        with interrupts.deferred() as pending:  # a signal stops the run between two steps, never inside one
            start = self.resume() if resume else 0
            step, interrupted, seconds, stopped = self.loop(start, resume, stop_after_steps, pending)
            result = self.finish(step, interrupted, seconds)
        result.signal = stopped or pending.signum
        return result

    def loop(self, start: int, resume: bool, stop_after_steps: int | None, pending) -> tuple[int, bool, float, int | None]:
        """Train from step `start`; (the last step done, interrupted, seconds, the signal that stopped it at once)."""
        self.announce(start)
        metrics = MetricsLog(self.run_dir.metrics, append=resume, enabled=self.ctx.is_main)
        if self.changed:
            self.record_changes(start, metrics)
        source, unit = self.source, self.source.unit
        self.bar = tqdm(total=source.seen(source.steps - 1)[unit], initial=source.seen(start - 1)[unit],
                        unit=unit[:-1], unit_scale=True, disable=not self.progress, dynamic_ncols=True, desc="train")
        t0 = window_t = time.perf_counter()
        step, logged, interrupted, stopped = start - 1, start, False, None
        self.model.train()
        try:
            for step in range(start, source.steps):
                loss = self.stepper(self.stepper.split(source.batch(step)))
                self.bar.update(source.seen(step)[unit] - self.bar.n)
                if (step + 1) % self.cfg.train.log_every == 0 or step == source.steps - 1:
                    now = time.perf_counter()
                    metrics.write(self.log_record(step, loss, (step + 1 - logged) / max(now - window_t, 1e-9), now - t0))
                    window_t, logged = now, step + 1
                if source.due(step):
                    record, message = source.evaluate(step, self.measure)
                    metrics.write({"step": step + 1, **source.seen(step), **record})
                    self.say(message)
                if self.save_after_step(step, start, stop_after_steps) or self.stop_for_signal(step, pending):
                    interrupted = True
                    break
        except KeyboardInterrupt as err:  # a second signal: stop at once, the newest checkpoint is the resume point
            interrupted, stopped = True, interrupts.signal_of(err)
            self.say(f"stopped at once by a second {interrupts.name(stopped)}: nothing saved after the newest "
                     f"checkpoint, which {RESUME_HINT} continues from")
        finally:
            self.bar.close()
            metrics.close()
        return step, interrupted, time.perf_counter() - t0, stopped

    def stop_for_signal(self, step: int, pending) -> bool:
        """After a SIGINT or SIGTERM, save the exact resume point after `step` and say how to continue; True
        then. Under torchrun the processes agree at the next logging step (the one sync they share)."""
        signum = pending.signum
        if self.ctx.enabled:
            if (step + 1) % self.cfg.train.log_every:
                return False
            signum = -distributed.minimum(-(signum or 0), self.ctx, self.device) or None
            pending.signum = signum
        if signum is None or step == self.source.steps - 1:
            return False  # the last step: the run finishes and saves its final model
        if self.last_saved != step:
            self.save(LAST, step)
        self.say(f"stopped by {interrupts.name(signum)} after step {step + 1}: exact resume point saved in "
                 f"{self.run_dir.checkpoint(LAST)}; continue with {RESUME_HINT}")
        return True

    def log_record(self, step: int, loss: torch.Tensor, steps_per_s: float, elapsed: float) -> dict:
        value = distributed.mean(loss, self.ctx).item()  # the one host sync per logging window
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step + 1}; lower the learning rate or check the data")
        optimizers = self.stepper.optimizer.optimizers
        lrs = {f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
        tokens_per_s = steps_per_s * self.stepper.batch.size * self.source.seq_len
        self.bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens_per_s:,.0f}")
        extra = self.model.extra_metrics() if hasattr(self.model, "extra_metrics") else {}  # e.g. BLaLM's SWA gates
        return {"step": step + 1, **self.source.seen(step), "loss": value, "lr": self.stepper.scheduler.get_last_lr()[0],
                **lrs, "tokens_per_s": tokens_per_s, "elapsed_s": elapsed, **extra}

    def measure(self, blocks, whole: bool = False) -> float:
        """Rank 0's dev loss on `blocks` (the first `train.dev_blocks`, or all), on every rank."""
        cfg = self.cfg.train
        value = (dev_loss(self.model, blocks, cfg.dev_batch, None if whole else cfg.dev_blocks, self.device,
                          self.stepper.precision)
                 if self.ctx.is_main else None)
        return distributed.from_main([value] if value is not None else None, 1, self.ctx, self.device)[0]

    def say(self, message: str) -> None:
        if self.ctx.is_main and message:
            self.bar.write(message) if self.bar is not None else print(message)

    # --- checkpoints and resume --------------------------------------------------------------

    def save_after_step(self, step: int, first_step: int, stop_after_steps: int | None) -> bool:
        """Write the checkpoints due after `step`: its milestones, the periodic `last` and, when
        --stop-after is reached, the `last` to resume from. True when training should stop here."""
        for name in self.source.milestones.get(step, []):
            self.save(name, step, milestone=name)
            unit = self.source.unit
            self.say(f"checkpoint {name} at {self.source.seen(step)[unit]:,} {unit} (step {step + 1})")
        if step == self.source.steps - 1:
            return False
        save_every = self.cfg.train.save_every
        if save_every and (step + 1) % save_every == 0:
            self.save(LAST, step)
        if stop_after_steps is not None and step + 1 - first_step >= stop_after_steps:
            self.save(LAST, step)
            return True
        return False

    def trainer_state(self, step: int, milestone: str | None) -> dict:
        seen = self.source.seen(step)
        return {"step": step, "words_seen": seen["words"], "tokens_seen": seen["tokens"],
                **({"epoch": seen["epoch"]} if "epoch" in seen else {}), "milestone": milestone,
                **({"init_from": str(self.init_from)} if self.init_from else {}),
                "total_steps": self.source.steps, "n_parameters": self.n_parameters,
                "world_size": self.ctx.world_size, **self.source.state_dict()}

    def record_changes(self, start: int, metrics: MetricsLog) -> None:
        """The allowed config changes, from step `start` on: config_changes.jsonl, metrics.jsonl and
        every later checkpoint's hyperparameters.json."""
        if self.ctx.is_main:
            changes.record(self.run_dir, start, self.changed)
        metrics.write({"step": start, "config_change": {k: list(v) for k, v in self.changed.items()}})
        self.hparams["changes"] = changes.recorded(self.run_dir)
        self.say("applying config changes from step " + f"{start + 1}: " + ", ".join(
            f"{key} {old!r} -> {new!r}" for key, (old, new) in self.changed.items()))

    def check_finite(self, step: int) -> None:
        """Never save diverged weights: stop with the last good checkpoint left as it is."""
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()):  # one sync
            raise FloatingPointError(f"the weights became NaN or infinite by step {step + 1}; nothing was saved "
                                     "over the last checkpoints; lower the learning rate or check the data")

    def save(self, name: str, step: int, milestone: str | None = None) -> None:
        self.check_finite(step)
        if self.ctx.is_main:
            ckpt.save_checkpoint(self.run_dir.checkpoint(name), self.model, self.tokenizer,
                                 self.trainer_state(step, milestone), self.stepper.optimizer, self.stepper.scheduler,
                                 self.stepper.scaler, hyperparameters=self.hparams)
        if name == LAST:
            self.last_saved = step

    def resume(self) -> int:
        """Restore the latest resumable checkpoint; the first step still to run."""
        candidates = ckpt.resumable(self.run_dir.checkpoints)
        if not candidates:
            raise FileNotFoundError(f"--resume: no checkpoint with resume state under {self.run_dir.checkpoints}")
        last = candidates[0]
        state = ckpt.read_trainer_state(last)
        if state["total_steps"] != self.source.steps:
            raise ValueError(f"--resume: {last} belongs to a plan of {state['total_steps']} steps but this config plans "
                             f"{self.source.steps}; resume with the run's own config ({self.run_dir.config})")
        try:
            with torch.no_grad(), hf_progress_bars_off():
                self.model.load_state_dict(type(self.model).from_pretrained(last).state_dict())
        except Exception as err:  # noqa: BLE001 (a truncated or foreign weights file: name it and the way out)
            earlier = f"; delete it to resume from {candidates[1].name}" if len(candidates) > 1 else ""
            raise ValueError(f"--resume: {last} is damaged ({type(err).__name__}: {err}){earlier}") from None
        ckpt.load_resume_state(last, self.stepper.optimizer, self.stepper.scheduler, self.stepper.scaler)
        self.source.load_state_dict(state)
        self.say(f"resuming from {last} (step {state['step'] + 1}, {state['words_seen']:,} words and "
                 f"{state['tokens_seen']:,} tokens seen)")
        return state["step"] + 1

    # --- start and end -----------------------------------------------------------------------

    def announce(self, start: int) -> None:
        cfg, ctx, stepper, batch = self.cfg, self.ctx, self.stepper, self.stepper.batch
        features = "".join(f", {name}" for name, on in (("compiled", cfg.train.compile),
                                                        ("gradient checkpointing", cfg.train.gradient_checkpointing)) if on)
        self.say(f"model: {self.arch.name} with {self.n_parameters:,} parameters on "
                 f"{self.device} ({ctx.world_size} process{'es' if ctx.enabled else ''}, {stepper.precision}{features}); "
                 f"{self.source.steps:,} steps of {batch.size} x {self.source.seq_len} tokens "
                 f"({batch.accumulation} x {batch.micro} sequences per process and step); "
                 f"{self.source.describe()}; {sum(len(v) for v in self.source.milestones.values())} milestone checkpoints")
        if self.init_from is not None and start == 0:
            self.say(f"weights from {self.init_from} (model.init_from); the optimizer and the learning-rate schedule "
                     "start fresh" + ("" if init_tokenizer(cfg) else f"; {self.init_from} has no tokenizer, so the "
                                      "tokenizer trained here gives the embedding rows their meaning"))
        self.say(describe(stepper.optimizer))

    def finish(self, step: int, interrupted: bool, seconds: float) -> TrainResult:
        if not interrupted:
            self.save(FINAL, self.source.steps - 1)
        final_dev = None
        if self.ctx.is_main:
            plot_training(self.run_dir.path)
            final_dev = self.source.finish()
        seen = self.source.seen(step)
        return TrainResult(self.run_dir.path, self.run_dir.checkpoint(FINAL), step + 1, seen["words"], seen["tokens"],
                           final_dev, seconds, interrupted)
