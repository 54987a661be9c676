"""Multilingual training: each step's batch rows are drawn per language by the mixing policy's pi.

`MixedSource` is the training engine's batch source when the config has `mixing.languages`: the
data is per-language blocks (data/multilingual.py), each step's rows are a seeded per-step
language draw (`Mixer.sample`), per-language dev losses every `mixing.eval_every` steps update
pi, and checkpoints fall at token-exposure milestones (chck_1M ... by tokens read). The mixing
state rides in trainer_state.json, so resume continues it. Under torchrun every rank draws the
same global batch (same seeds, same stream positions) and trains on its own contiguous slice of
it; rank 0 measures the dev losses and broadcasts them, so every rank updates pi identically.
Outputs besides the loop's: `mixing.png` (pi and dev loss per language) and `mixing.md` (the
model-card section `babble export` includes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..data.blocks import load_blocks
from ..data.multilingual import prepare_multilingual
from ..rundir import RunDir
from .mixing import Mixer
from .plan import milestone_steps
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


class MixedSource:
    """The engine's batch source for a multilingual run: each step's rows drawn per language by the
    mixer's pi; per-language dev losses every `mixing.eval_every` steps update pi. Counts tokens."""

    unit = "tokens"

    @classmethod
    def prepare(cls, cfg: RunConfig, run: RunDir, progress: bool) -> None:
        prepare_multilingual(cfg.mixing, cfg.data, cfg.tokenizer, run.data, progress=progress)

    def __init__(self, cfg: RunConfig, run: RunDir, ctx):
        self.cfg, self.run, mix = cfg, run, cfg.mixing
        self.manifest = prepare_multilingual(mix, cfg.data, cfg.tokenizer, run.data, progress=False)
        self.langs = list(mix.languages)
        self.train = {lang: load_blocks(run.data / lang, "train") for lang in self.langs}
        self.dev = {lang: load_blocks(run.data / lang, "dev") for lang in self.langs}
        self.seq_len = cfg.data.seq_len
        self.global_batch = cfg.train.batch_size * cfg.train.grad_accum
        step_tokens = self.global_batch * self.seq_len
        corpus_tokens = sum(len(b.tokens) for b in self.train.values()) * self.seq_len
        self.steps = int((mix.tokens or cfg.train.epochs * corpus_tokens) // step_tokens)
        if self.steps < 1:
            raise ValueError(f"mixing.tokens / train.epochs give {self.steps} steps of {step_tokens} tokens: train longer")
        self.cum_tokens = np.arange(1, self.steps + 1, dtype=np.int64) * step_tokens
        self.milestones = (milestone_steps(self.cum_tokens, cfg.checkpoints.scale)
                           if cfg.checkpoints.milestones == "babylm" else {})
        self.mixer = Mixer(self.langs, mix.policy, initial_pi(cfg), mix.eta, mix.gamma, mix.min_pi, mix.reward)
        self.streams = {lang: LanguageStream(self.train[lang], cfg.run.seed, i) for i, lang in enumerate(self.langs)}
        self.words = 0

    def describe(self) -> str:
        mix = self.cfg.mixing
        budget = f" (budget {mix.budget:,})" if mix.budget is not None else ""
        return (f"mixing {', '.join(self.langs)} ({mix.policy}, reward {mix.reward}), pi at start "
                f"{_fmt(self.mixer.pi_dict())}; {self.manifest['adjusted_bytes']:,.0f} premium-adjusted bytes of data{budget}")

    def batch(self, step: int) -> np.ndarray:
        rows = self.mixer.sample(step, self.cfg.run.seed, self.global_batch)
        self.mixer.count(rows, self.seq_len)
        picks = {lang: np.sort(self.streams[lang].take(int(r))) for lang, r in zip(self.langs, rows.tolist()) if r}
        self.words += sum(int(self.train[lang].words[idx].sum()) for lang, idx in picks.items())
        x = np.concatenate([self.train[lang].tokens[idx] for lang, idx in picks.items()])
        return x[np.random.default_rng([self.cfg.run.seed, step, 1]).permutation(len(x))]

    def seen(self, step: int) -> dict:
        """After steps 0..step; words are counted as batches are drawn (valid for the latest step)."""
        return {"words": self.words if step >= 0 else 0, "tokens": int(self.cum_tokens[step]) if step >= 0 else 0}

    def due(self, step: int) -> bool:
        return (step + 1) % self.cfg.mixing.eval_every == 0 or step == self.steps - 1

    def evaluate(self, step: int, measure) -> tuple[dict, str]:
        losses = {lang: measure(self.dev[lang]) for lang in self.langs}
        rewards = self.mixer.update(losses)
        record = {"dev_loss": losses, "reward": rewards, "pi": self.mixer.pi_dict(), "exposures": dict(self.mixer.exposures)}
        message = (f"step {step + 1}: dev loss {', '.join(f'{lang} {v:.4f}' for lang, v in losses.items())}; "
                   f"pi {_fmt(record['pi'])}")
        return record, message

    def state_dict(self) -> dict:
        return {"mixing": self.mixer.state_dict(), "stream_positions": {lang: s.position for lang, s in self.streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.mixer.load_state_dict(state["mixing"])
        for lang in self.langs:
            self.streams[lang].position = state["stream_positions"][lang]
        self.words = state["words_seen"]

    def finish(self) -> float | None:
        """mixing.png and mixing.md; the mean of the last per-language dev losses."""
        records = read_mixing_records(self.run.metrics)
        if not records:
            return None
        plot_mixing(records, self.run.path / MIXING_PLOT)
        mix = self.cfg.mixing
        seconds = max((r.get("elapsed_s", 0.0) for r in read_records(self.run.metrics)), default=0.0)
        (self.run.path / MIXING_CARD).write_text(card_section(records, mix.policy, mix.reward, seconds), encoding="utf-8")
        return float(np.mean(list(records[-1]["dev_loss"].values())))


def _fmt(pi: dict[str, float]) -> str:
    return ", ".join(f"{lang} {p:.3f}" for lang, p in pi.items())


def read_records(path: Path) -> list[dict]:
    """Every record of a run's metrics.jsonl, in order."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_mixing_records(path: Path) -> list[dict]:
    """The evaluation records (with "pi") of a run's metrics.jsonl, in order."""
    return [r for r in read_records(path) if "pi" in r]


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


def card_section(records: list[dict], policy: str, reward: str, seconds: float) -> str:
    """The model card's mixing section: final pi, token exposures, wall-clock and the pi trajectory."""
    last = records[-1]
    langs = list(last["pi"])
    lines = ["## Multilingual mixing", "", f"Policy {policy} (reward {reward}); "
             f"{sum(last['exposures'].values()):,} token exposures in total; {seconds / 60:.1f} min of training.", "",
             "| language | final pi | token exposures | final dev loss |", "|---|---|---|---|"]
    lines += [f"| {lang} | {last['pi'][lang]:.3f} | {last['exposures'][lang]:,} | {last['dev_loss'][lang]:.4f} |"
              for lang in langs]
    lines += ["", f"pi trajectory ({MIXING_PLOT}):", "", "| tokens | " + " | ".join(langs) + " |",
              "|---|" + "---|" * len(langs)]
    every = max(1, len(records) // 10)
    for r in records[::every] + ([last] if (len(records) - 1) % every else []):
        lines.append(f"| {r['tokens']:,} | " + " | ".join(f"{r['pi'][lang]:.3f}" for lang in langs) + " |")
    return "\n".join(lines) + "\n"
