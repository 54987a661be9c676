"""The training plan of a monolingual run: which blocks each optimizer step reads, how many words
it has seen after each step, where the budget ends and where the BabyLM word milestones fall; and
`PlanSource`, the engine's batch source that reads a prepared corpus by that plan.

Everything is decided up front from the seed and the per-block word counts, so "words seen" is
exact at every step and a resumed run reads exactly the blocks an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import MAX_EPOCHS, RunConfig
from ..data.blocks import MANIFEST, load_blocks
from ..data.prepare import prepare_data
from ..eval.load import TOKENIZER_FILES
from ..models.registry import init_folder
from ..rundir import MILESTONES_M, RunDir, milestone_name


@dataclass
class TrainingPlan:
    order: np.ndarray  # block indices, global_batch per step, shape [steps, global_batch]
    cum_words: np.ndarray  # words seen after each step, shape [steps]
    global_batch: int
    epochs_planned: float
    limited_by: str  # "words" or "epochs"

    @property
    def steps(self) -> int:
        return len(self.cum_words)

    @property
    def total_words(self) -> int:
        return int(self.cum_words[-1]) if self.steps else 0

    def words_before(self, step: int) -> int:
        return int(self.cum_words[step - 1]) if step > 0 else 0

    def epoch_at(self, step: int, n_blocks: int) -> float:
        return (step + 1) * self.global_batch / n_blocks


def make_plan(block_words: np.ndarray, global_batch: int, epochs: float, words: int | None, seed: int,
              steps: int | None = None) -> TrainingPlan:
    """Shuffle blocks per epoch (seeded), group into steps, stop at the word or epoch budget, or after
    exactly `steps` steps (train.steps: the epochs are then as many as those steps read)."""
    n_blocks = len(block_words)
    if n_blocks < global_batch:
        raise ValueError(
            f"the training data has {n_blocks} blocks but one step needs {global_batch} "
            "(train.batch_size x train.grad_accum): use more data, a smaller batch or a shorter data.seq_len"
        )
    if steps is not None:
        epochs = steps * global_batch / n_blocks
        if epochs > MAX_EPOCHS:
            raise ValueError(f"train.steps: {steps:,} steps of {global_batch} blocks read the {n_blocks:,} training "
                             f"blocks {epochs:.2f} times; at most {MAX_EPOCHS} epochs (BabyLM rule)")
    elif epochs > MAX_EPOCHS:
        raise ValueError(f"train.epochs must be <= {MAX_EPOCHS} (BabyLM rule), got {epochs}")
    n_epochs = int(np.ceil(epochs))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_blocks) for _ in range(n_epochs)])
    max_steps = steps if steps is not None else int(epochs * n_blocks) // global_batch
    order = order[: max_steps * global_batch].reshape(max_steps, global_batch)
    cum_words = np.cumsum(block_words[order].sum(axis=1), dtype=np.int64)
    limited_by = "steps" if steps is not None else "epochs"
    if steps is None and words is not None and max_steps and cum_words[-1] >= words:
        cut = int(np.searchsorted(cum_words, words, side="left")) + 1
        order, cum_words, limited_by = order[:cut], cum_words[:cut], "words"
    return TrainingPlan(order, cum_words, global_batch, epochs, limited_by)


def milestone_steps(cumulative: np.ndarray, scale: float) -> dict[int, list[str]]:
    """step -> names of the milestones first reached after that step (`cumulative[step]`, the words
    or tokens seen after it, >= N million x scale)."""
    out: dict[int, list[str]] = {}
    for m in MILESTONES_M:
        threshold = m * 1_000_000 * scale
        if len(cumulative) == 0 or cumulative[-1] < threshold:
            break
        step = int(np.searchsorted(cumulative, threshold, side="left"))
        out.setdefault(step, []).append(milestone_name(m))
    return out


def init_tokenizer(cfg: RunConfig) -> Path | None:
    """The folder of `model.init_from` when it holds a tokenizer: the run encodes its text with it."""
    folder = init_folder(cfg.model)
    return folder if folder is not None and any((folder / name).is_file() for name in TOKENIZER_FILES) else None


class PlanSource:
    """The engine's batch source for a monolingual run: the prepared corpus read by its plan; dev
    loss every `train.dev_every` steps. Counts words."""

    unit = "words"

    @classmethod
    def prepare(cls, cfg: RunConfig, run: RunDir, progress: bool) -> dict:
        return prepare_data(cfg.data, cfg.tokenizer, run.data, progress=progress, tokenizer_from=init_tokenizer(cfg))

    @classmethod
    def prepared(cls, run: RunDir) -> dict:
        return json.loads((run.data / MANIFEST).read_text(encoding="utf-8"))

    def __init__(self, cfg: RunConfig, run: RunDir, ctx, manifest: dict):
        self.cfg, self.manifest = cfg, manifest
        self.train, self.dev = load_blocks(run.data, "train"), load_blocks(run.data, "dev")
        self.plan = make_plan(self.train.words, cfg.train.global_batch, cfg.train.epochs, cfg.train.words, cfg.run.seed,
                              cfg.train.steps)
        self.steps, self.seq_len = self.plan.steps, self.train.tokens.shape[1]
        self.milestones = (milestone_steps(self.plan.cum_words, cfg.checkpoints.scale)
                           if cfg.checkpoints.milestones == "babylm" else {})
        self.last_dev: float | None = None

    def describe(self) -> str:
        return (f"{self.plan.total_words:,} words ({self.plan.limited_by} budget, "
                f"{self.manifest['splits']['train']['words']:,} words per epoch)")

    def batch(self, step: int) -> np.ndarray:
        return self.train.tokens[self.plan.order[step]]

    def seen(self, step: int) -> dict:
        """After steps 0..step (step -1: nothing yet)."""
        return {"words": self.plan.words_before(step + 1), "tokens": (step + 1) * self.plan.global_batch * self.seq_len,
                "epoch": self.plan.epoch_at(step, len(self.train.words))}

    def due(self, step: int) -> bool:
        every = self.cfg.train.dev_every
        return bool(every) and ((step + 1) % every == 0 or step == self.steps - 1)

    def evaluate(self, step: int, measure) -> tuple[dict, str]:
        self.last_dev = loss = measure(self.dev)
        ppl = math.exp(min(loss, 50))
        return {"dev_loss": loss, "dev_ppl": ppl}, f"step {step + 1}: dev loss {loss:.4f} (ppl {ppl:.2f})"

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def finish(self) -> float | None:
        return self.last_dev
