"""Multilingual training: each step's batch is drawn from the languages by the mixing policy's pi.

`MixedSource` is the training engine's batch source when the config has `mixing.languages`: the
data is per-language blocks (data/languages.py); each step's batch is one language drawn from pi
(`mixing.granularity: batch`) or rows drawn per language (`rows`), see `Mixer.sample`; every
`mixing.eval_every` steps the per-language loss on the reward dev slice updates pi; at the end a
separate, larger final dev slice is measured. Checkpoints fall at token-exposure milestones
(chck_1M ... by tokens read). The mixing state (with the batch generator) rides in
trainer_state.json, so resume continues it exactly. Under torchrun every rank draws the same
global batch (same seeds, same stream positions) and trains on its own contiguous slice of it;
rank 0 measures the dev losses and broadcasts them, so every rank updates pi identically.
Outputs besides the loop's: `mixing.png` (pi and dev loss per language) and `mixing.md` (the
model-card section `babble export` includes).

Dev slices: each language's dev blocks, in order: the first ceil(mixing.reward_dev_tokens /
seq_len) are the reward slice, the next ceil(mixing.final_dev_tokens / seq_len) the final slice;
a language with fewer dev blocks is refused before training.
"""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import numpy as np

from ..config import PiFromRuns, RunConfig
from ..data.blocks import Blocks, load_blocks
from ..data.corpus import DataError
from ..data.languages import ML_MANIFEST, prepare_multilingual
from ..rundir import MIXING_PLOT, RunDir
from .exp3 import Mixer
from .plan import milestone_steps
from .prior import typological_prior



def initial_pi(cfg: RunConfig, manifest: dict) -> np.ndarray:
    """pi0 in language order: mixing.pi (or earlier runs' time average), else the configured prior."""
    mix, langs = cfg.mixing, list(cfg.mixing.languages)
    if isinstance(mix.pi, PiFromRuns):
        return time_averaged_pi(mix.pi.from_runs, langs)
    if mix.pi is not None:
        return np.array([mix.pi[lang] for lang in langs], dtype=np.float64)
    if mix.policy == "uniform" or mix.prior == "uniform" or len(langs) == 1:
        return np.full(len(langs), 1.0 / len(langs))
    if mix.prior == "proportional":
        tokens = np.array([manifest["per_language"][lang]["tokens"] for lang in langs], dtype=np.float64)
        return tokens / tokens.sum()
    return typological_prior(langs, mix.temperature, mix.prior_floor, mix.features, reverse=mix.prior == "uriel_reverse").pi0


def time_averaged_pi(runs: list[str], languages: list[str]) -> np.ndarray:
    """The mean over runs of each run's pi averaged over all its evaluations, renormalised (P* from
    TAAM-v2). Entries may be glob patterns (runs/m/TAAM_v2-s*). A step logged twice (a resumed run)
    counts once, with its later record."""
    folders = [Path(p) for entry in runs for p in (sorted(glob.glob(entry)) or [entry])]
    averages = []
    for folder in folders:
        metrics = RunDir(folder).metrics
        records = read_mixing_records(metrics) if metrics.is_file() else []
        if not records:
            raise FileNotFoundError(f"mixing.pi.from_runs: {folder} holds no evaluation records ({metrics})")
        if set(records[0]["pi"]) != set(languages):
            raise ValueError(f"mixing.pi.from_runs: {folder} mixed {', '.join(records[0]['pi'])}, "
                             f"this run mixes {', '.join(languages)}")
        latest = {r["step"]: r for r in records}.values()
        averages.append(np.mean([[r["pi"][lang] for lang in languages] for r in latest], axis=0))
    pi = np.mean(averages, axis=0)
    return pi / pi.sum()


def dev_slices(dev: Blocks, lang: str, cfg: RunConfig) -> tuple[Blocks, Blocks]:
    """(reward slice, final slice) of one language's dev blocks; refuses too little dev data."""
    seq_len, mix = cfg.data.seq_len, cfg.mixing
    reward, final = math.ceil(mix.reward_dev_tokens / seq_len), math.ceil(mix.final_dev_tokens / seq_len)
    have = len(dev.tokens)
    if have < reward + final:
        raise DataError(f"mixing.reward_dev_tokens + mixing.final_dev_tokens: {lang} has {have} dev blocks of {seq_len} "
                        f"tokens, the dev slices need {reward} + {final}; add {lang} dev text or lower them")
    return (Blocks(dev.tokens[:reward], dev.words[:reward]),
            Blocks(dev.tokens[reward : reward + final], dev.words[reward : reward + final]))


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
    """The engine's batch source for a multilingual run: each step's batch drawn from the languages
    by the mixer's pi; per-language reward-slice losses every `mixing.eval_every` steps update pi;
    the final dev slice is measured at the last step. Counts tokens."""

    unit = "tokens"

    @classmethod
    def prepare(cls, cfg: RunConfig, run: RunDir, progress: bool) -> dict:
        return prepare_multilingual(cfg.mixing, cfg.data, cfg.tokenizer, run.data, progress=progress)

    @classmethod
    def prepared(cls, run: RunDir) -> dict:
        return json.loads((run.data / ML_MANIFEST).read_text(encoding="utf-8"))

    def __init__(self, cfg: RunConfig, run: RunDir, ctx, manifest: dict):
        self.cfg, self.run, self.manifest, mix = cfg, run, manifest, cfg.mixing
        self.langs = list(mix.languages)
        self.train = {lang: load_blocks(run.data / lang, "train") for lang in self.langs}
        slices = {lang: dev_slices(load_blocks(run.data / lang, "dev"), lang, cfg) for lang in self.langs}
        self.reward_dev = {lang: s[0] for lang, s in slices.items()}
        self.final_dev = {lang: s[1] for lang, s in slices.items() if len(s[1].tokens)}
        self.seq_len = cfg.data.seq_len
        step_tokens = cfg.train.global_batch * self.seq_len
        corpus_tokens = sum(len(b.tokens) for b in self.train.values()) * self.seq_len
        self.steps = int((mix.tokens or cfg.train.epochs * corpus_tokens) // step_tokens)
        if self.steps < 1:
            raise ValueError(f"mixing.tokens / train.epochs give {self.steps} steps of {step_tokens} tokens: train longer")
        self.cum_tokens = np.arange(1, self.steps + 1, dtype=np.int64) * step_tokens
        self.milestones = (milestone_steps(self.cum_tokens, cfg.checkpoints.scale)
                           if cfg.checkpoints.milestones == "babylm" else {})
        self.mixer = Mixer(self.langs, mix.policy, initial_pi(cfg, self.manifest), mix.eta, mix.gamma, mix.min_pi,
                           mix.reward, mix.granularity, cfg.run.seed)
        self.streams = {lang: LanguageStream(self.train[lang], cfg.run.seed, i) for i, lang in enumerate(self.langs)}
        self.words = 0

    def describe(self) -> str:
        mix = self.cfg.mixing
        budget = f" (budget {mix.budget:,})" if mix.budget is not None else ""
        draw = "one language per batch" if mix.granularity == "batch" else "languages drawn per row"
        reward, final = (len(next(iter(s.values())).tokens) if s else 0 for s in (self.reward_dev, self.final_dev))
        return (f"mixing {', '.join(self.langs)} ({mix.policy}, reward {mix.reward}, {draw}), pi at start "
                f"{_fmt(self.mixer.pi_dict())}; {self.manifest['adjusted_bytes']:,.0f} premium-adjusted bytes of "
                f"data{budget}; dev slices per language: {reward} blocks for the rewards, {final} final")

    def batch(self, step: int) -> np.ndarray:
        rows = self.mixer.sample(step, self.cfg.train.global_batch)
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
        losses = {lang: measure(self.reward_dev[lang], whole=True) for lang in self.langs}
        rewards = self.mixer.update(losses)
        record = {"dev_loss": losses, "reward": rewards, "pi": self.mixer.pi_dict(), "exposures": dict(self.mixer.exposures)}
        message = (f"step {step + 1}: dev loss {', '.join(f'{lang} {v:.4f}' for lang, v in losses.items())}; "
                   f"pi {_fmt(record['pi'])}")
        if step == self.steps - 1 and self.final_dev:
            record["final_dev_loss"] = {lang: measure(blocks, whole=True) for lang, blocks in self.final_dev.items()}
            message += "\nfinal dev loss " + ", ".join(f"{lang} {v:.4f}" for lang, v in record["final_dev_loss"].items())
        return record, message

    def state_dict(self) -> dict:
        return {"mixing": self.mixer.state_dict(), "stream_positions": {lang: s.position for lang, s in self.streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.mixer.load_state_dict(state["mixing"])
        for lang in self.langs:
            self.streams[lang].position = state["stream_positions"][lang]
        self.words = state["words_seen"]

    def finish(self) -> float | None:
        """mixing.png and mixing.md; the mean over languages of the final (else the last reward) dev losses."""
        records = read_mixing_records(self.run.metrics)
        if not records:
            return None
        plot_mixing(records, self.run.mixing_plot)
        mix = self.cfg.mixing
        seconds = max((r.get("elapsed_s", 0.0) for r in read_records(self.run.metrics)), default=0.0)
        self.run.mixing_card.write_text(card_section(records, mix.policy, mix.reward, seconds), encoding="utf-8")
        return float(np.mean(list(final_losses(records[-1]).values())))


def final_losses(record: dict) -> dict[str, float]:
    """A run's last evaluation record -> per-language loss on the final dev slice (else the reward slice)."""
    return record.get("final_dev_loss") or record["dev_loss"]


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
    final = final_losses(last)
    lines += [f"| {lang} | {last['pi'][lang]:.3f} | {last['exposures'][lang]:,} | {final[lang]:.4f} |" for lang in langs]
    lines += ["", f"pi trajectory ({MIXING_PLOT}):", "", "| tokens | " + " | ".join(langs) + " |",
              "|---|" + "---|" * len(langs)]
    every = max(1, len(records) // 10)
    for r in records[::every] + ([last] if (len(records) - 1) % every else []):
        lines.append(f"| {r['tokens']:,} | " + " | ".join(f"{r['pi'][lang]:.3f}" for lang in langs) + " |")
    return "\n".join(lines) + "\n"
