"""Multilingual training: each step's batch rows are drawn per language by the mixing policy's pi.

Called by `train()` when the config has `mixing.languages`. It reuses the loop's model, stepper,
dev loss and checkpoints; what differs is the data: per-language blocks (data/multilingual.py),
a seeded per-step language draw (`Mixer.sample`), per-language dev losses every
`mixing.eval_every` steps that update pi, and checkpoints at token-exposure milestones
(chck_1M ... by tokens read). The mixing state rides in trainer_state.json, so resume continues it.
Under torchrun every rank draws the same global batch (same seeds, same stream positions) and
trains on its own contiguous slice of it; rank 0 measures the dev losses and broadcasts them, so
every rank updates pi identically.
Outputs besides the loop's: `mixing.png` (pi and dev loss per language) and `mixing.md` (the
model-card section `babble export` includes).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, save_config
from ..configbase import to_dict
from ..data.blocks import load_blocks
from ..data.multilingual import prepare_multilingual
from . import checkpoints as ckpt
from . import distributed
from .mixing import Mixer
from .plan import TrainingPlan, milestone_steps
from .plot import plot_training
from .prior import typological_prior

MIXING_CARD = "mixing.md"
MIXING_PLOT = "mixing.png"


def initial_pi(cfg: RunConfig) -> np.ndarray:
    mix, langs = cfg.mixing, list(cfg.mixing.languages)
    if mix.pi is not None:
        return np.array([mix.pi[lang] for lang in langs], dtype=np.float64)
    if mix.policy == "uniform" or mix.prior == "uniform":
        return np.full(len(langs), 1.0 / len(langs))
    return typological_prior(langs, mix.temperature, mix.min_pi)


class LanguageStream:
    """Blocks of one language in a seeded order that is reshuffled every pass (position is resumable)."""

    def __init__(self, blocks, seed: int, index: int):
        self.blocks, self.seed, self.index = blocks, seed, index
        self.position = 0

    def take(self, n: int) -> np.ndarray:
        total = len(self.blocks.tokens)
        out = []
        while n:
            epoch, offset = divmod(self.position, total)
            order = np.random.default_rng([self.seed, self.index, epoch]).permutation(total)
            part = order[offset : offset + n]
            out.append(part)
            self.position, n = self.position + len(part), n - len(part)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def train_mixed(cfg: RunConfig, ctx, device: torch.device, resume: bool, progress: bool, stop_after_steps: int | None):
    from transformers import AutoTokenizer

    from .loop import MetricsLog, TrainResult, build_model, build_stepper, dev_loss, save_after_step

    run_dir, mix = cfg.out_dir, cfg.mixing
    ckpt_dir = run_dir / "checkpoints"
    torch.manual_seed(cfg.run.seed)
    if ctx.is_main:  # rank 0 prepares the data; the others then find it cached
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        prepare_multilingual(mix, cfg.data, cfg.tokenizer, run_dir / "data", progress=progress)
    distributed.barrier(ctx)
    manifest = prepare_multilingual(mix, cfg.data, cfg.tokenizer, run_dir / "data", progress=False)
    langs = list(mix.languages)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "data" / "tokenizer")
    train_blocks = {lang: load_blocks(run_dir / "data" / lang, "train") for lang in langs}
    dev_blocks = {lang: load_blocks(run_dir / "data" / lang, "dev") for lang in langs}
    seq_len = cfg.data.seq_len
    global_batch = cfg.train.batch_size * cfg.train.grad_accum
    step_tokens = global_batch * seq_len
    corpus_tokens = sum(len(b.tokens) for b in train_blocks.values()) * seq_len
    steps = int((mix.tokens or cfg.train.epochs * corpus_tokens) // step_tokens)
    if steps < 1:
        raise ValueError(f"mixing.tokens / train.epochs give {steps} steps of {step_tokens} tokens: train longer")
    cum_tokens = np.arange(1, steps + 1, dtype=np.int64) * step_tokens
    milestones = (milestone_steps(TrainingPlan(None, cum_tokens, global_batch, cfg.train.epochs, "tokens"),
                                  cfg.checkpoints.scale) if cfg.checkpoints.milestones == "babylm" else {})

    mixer = Mixer(langs, mix.policy, initial_pi(cfg), mix.eta, mix.gamma, mix.min_pi, mix.reward)
    streams = {lang: LanguageStream(train_blocks[lang], cfg.run.seed, i) for i, lang in enumerate(langs)}
    model = build_model(cfg, tokenizer).to(device)
    stepper = build_stepper(cfg, model, device, ctx, steps, seq_len)
    start, seen = 0, {"words": 0}
    if resume:
        last = ckpt.latest_resumable(ckpt_dir)
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint with resume state under {ckpt_dir}")
        state = ckpt.read_trainer_state(last)
        with torch.no_grad():
            model.load_state_dict(type(model).from_pretrained(last).state_dict())
        ckpt.load_resume_state(last, stepper.optimizer, stepper.scheduler, stepper.scaler)
        mixer.load_state_dict(state["mixing"])
        for lang in langs:
            streams[lang].position = state["stream_positions"][lang]
        start, seen["words"] = state["step"] + 1, state["words_seen"]
    local_batch = global_batch // ctx.world_size
    if ctx.is_main:
        print(f"mixing {', '.join(langs)} ({mix.policy}, reward {mix.reward}); pi at start "
              f"{_fmt(mixer.pi_dict())}; {steps:,} steps of {step_tokens:,} tokens "
              f"({ctx.world_size} process{'es' if ctx.enabled else ''}); "
              f"{manifest['adjusted_bytes']:,.0f} premium-adjusted bytes of data")

    hparams = ckpt.hyperparameters(to_dict(cfg))

    def save(name: str, step: int, milestone: str | None = None) -> None:
        if not ctx.is_main:
            return
        state = {"step": step, "tokens_seen": int(cum_tokens[step]), "words_seen": seen["words"],
                 "milestone": milestone, "total_steps": steps, "mixing": mixer.state_dict(),
                 "stream_positions": {lang: s.position for lang, s in streams.items()}}
        ckpt.save_checkpoint(ckpt_dir / name, model, tokenizer, state, stepper.optimizer, stepper.scheduler,
                             stepper.scaler, hyperparameters=hparams)

    def batch(step: int) -> list[torch.Tensor]:
        rows = mixer.sample(step, cfg.run.seed, global_batch)
        mixer.count(rows, seq_len)
        picks = {lang: np.sort(streams[lang].take(int(r))) for lang, r in zip(langs, rows.tolist()) if r}
        seen["words"] += sum(int(train_blocks[lang].words[idx].sum()) for lang, idx in picks.items())
        x = np.concatenate([train_blocks[lang].tokens[idx] for lang, idx in picks.items()])
        x = x[np.random.default_rng([cfg.run.seed, step, 1]).permutation(len(x))]
        mine = x.reshape(ctx.world_size, local_batch, seq_len)[ctx.rank]
        return [stepper.load(m) for m in np.split(mine, local_batch // stepper.micro_batch)]

    def dev_losses() -> dict[str, float]:
        """Rank 0's dev loss per language, on every rank."""
        losses = ([dev_loss(model, dev_blocks[lang], cfg.train.batch_size, cfg.train.dev_batches, device,
                            stepper.precision) for lang in langs] if ctx.is_main else None)
        return dict(zip(langs, distributed.from_main(losses, len(langs), ctx, device)))

    metrics = MetricsLog(run_dir / "metrics.jsonl", append=resume, enabled=ctx.is_main)
    write = metrics.write

    t0, step, interrupted = time.perf_counter(), start - 1, False
    try:
        for step in range(start, steps):
            loss = stepper(batch(step))
            if (step + 1) % cfg.train.log_every == 0 or step == steps - 1:
                value = distributed.mean(loss, ctx).item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss became {value} at step {step}")
                write({"step": step + 1, "tokens": int(cum_tokens[step]), "loss": value,
                       "lr": stepper.scheduler.get_last_lr()[0]})
            if (step + 1) % mix.eval_every == 0 or step == steps - 1:
                losses = dev_losses()
                rewards = mixer.update(losses)
                write({"step": step + 1, "tokens": int(cum_tokens[step]), "dev_loss": losses, "reward": rewards,
                       "pi": mixer.pi_dict(), "exposures": dict(mixer.exposures)})
            if save_after_step(step, steps - 1, start, milestones.get(step, []), save, cfg.train.save_every,
                               stop_after_steps):
                interrupted = True
                break
    except KeyboardInterrupt:
        if step >= start:
            save("last", step)
        interrupted = True
    finally:
        metrics.close()
    if not interrupted:
        save("final", steps - 1)
    records = read_mixing_records(run_dir / "metrics.jsonl") if ctx.is_main else []
    if ctx.is_main:
        plot_training(run_dir)
    if records:
        plot_mixing(records, run_dir / MIXING_PLOT)
        (run_dir / MIXING_CARD).write_text(card_section(records, mix.policy, mix.reward), encoding="utf-8")
    last_dev = float(np.mean(list(records[-1]["dev_loss"].values()))) if records else None
    return TrainResult(run_dir, ckpt_dir / "final", step + 1, seen["words"], int(cum_tokens[step]) if step >= 0 else 0,
                       last_dev, time.perf_counter() - t0, interrupted)


def _fmt(pi: dict[str, float]) -> str:
    return ", ".join(f"{lang} {p:.3f}" for lang, p in pi.items())


def read_mixing_records(path: Path) -> list[dict]:
    """The evaluation records (with "pi") of a run's metrics.jsonl, in order."""
    with open(path, encoding="utf-8") as handle:
        return [r for r in map(json.loads, handle) if "pi" in r]


def plot_mixing(records: list[dict], out: Path, title: str = "") -> Path:
    """pi (top) and per-language dev loss (bottom) against tokens read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = [r["tokens"] for r in records]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for lang in records[0]["pi"]:
        top.plot(tokens, [r["pi"][lang] for r in records], label=lang)
        bottom.plot(tokens, [r["dev_loss"][lang] for r in records], label=lang)
    top.set_ylabel("pi (sampling probability)")
    bottom.set_ylabel("dev loss")
    bottom.set_xlabel("tokens read")
    top.legend()
    top.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def card_section(records: list[dict], policy: str, reward: str) -> str:
    """The model card's mixing section: final pi, token exposures and the pi trajectory."""
    last = records[-1]
    langs = list(last["pi"])
    lines = ["## Multilingual mixing", "", f"Policy {policy} (reward {reward}); "
             f"{sum(last['exposures'].values()):,} token exposures in total.", "",
             "| language | final pi | token exposures | final dev loss |", "|---|---|---|---|"]
    lines += [f"| {lang} | {last['pi'][lang]:.3f} | {last['exposures'][lang]:,} | {last['dev_loss'][lang]:.4f} |"
              for lang in langs]
    lines += ["", f"pi trajectory ({MIXING_PLOT}):", "", "| tokens | " + " | ".join(langs) + " |",
              "|---|" + "---|" * len(langs)]
    every = max(1, len(records) // 10)
    for r in records[::every] + ([last] if (len(records) - 1) % every else []):
        lines.append(f"| {r['tokens']:,} | " + " | ".join(f"{r['pi'][lang]:.3f}" for lang in langs) + " |")
    return "\n".join(lines) + "\n"
