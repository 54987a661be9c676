"""The training plan: which blocks each optimizer step reads, how many words it has seen after each
step, where the budget ends and where the BabyLM word milestones fall.

Everything is decided up front from the seed and the per-block word counts, so "words seen" is
exact at every step and a resumed run reads exactly the blocks an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MAX_EPOCHS

# BabyLM checkpoint milestones in millions of words: 1..10 by 1, 20..100 by 10, 200..1000 by 100.
MILESTONES_M = list(range(1, 11)) + list(range(20, 101, 10)) + list(range(200, 1001, 100))


def milestone_name(millions: int) -> str:
    return f"chck_{millions}M"


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


def make_plan(block_words: np.ndarray, global_batch: int, epochs: float, words: int | None, seed: int) -> TrainingPlan:
    """Shuffle blocks per epoch (seeded), group into steps, stop at the word or epoch budget."""
    n_blocks = len(block_words)
    if n_blocks < global_batch:
        raise ValueError(
            f"the training data has {n_blocks} blocks but one step needs {global_batch} "
            "(train.batch_size x train.grad_accum): use more data, a smaller batch or a shorter data.seq_len"
        )
    if epochs > MAX_EPOCHS:
        raise ValueError(f"train.epochs must be <= {MAX_EPOCHS} (BabyLM rule), got {epochs}")
    n_epochs = int(np.ceil(epochs))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_blocks) for _ in range(n_epochs)])
    max_steps = int(epochs * n_blocks) // global_batch
    order = order[: max_steps * global_batch].reshape(max_steps, global_batch)
    cum_words = np.cumsum(block_words[order].sum(axis=1), dtype=np.int64)
    limited_by = "epochs"
    if words is not None and max_steps and cum_words[-1] >= words:
        steps = int(np.searchsorted(cum_words, words, side="left")) + 1
        order, cum_words, limited_by = order[:steps], cum_words[:steps], "words"
    return TrainingPlan(order, cum_words, global_batch, epochs, limited_by)


def milestone_steps(plan: TrainingPlan, scale: float) -> dict[int, list[str]]:
    """step -> names of the milestones first reached after that step (words seen >= N million x scale)."""
    out: dict[int, list[str]] = {}
    for m in MILESTONES_M:
        threshold = m * 1_000_000 * scale
        if plan.steps == 0 or plan.cum_words[-1] < threshold:
            break
        step = int(np.searchsorted(plan.cum_words, threshold, side="left"))
        out.setdefault(step, []).append(milestone_name(m))
    return out
