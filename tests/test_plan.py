"""Exact word accounting and BabyLM milestone placement."""

import numpy as np
import pytest

from babblelm.rundir import MILESTONES_M
from babblelm.train.plan import make_plan, milestone_steps


def test_milestone_list_is_babylm():
    assert MILESTONES_M[:10] == list(range(1, 11))
    assert MILESTONES_M[10:19] == list(range(20, 101, 10))
    assert MILESTONES_M[-1] == 1000 and len(MILESTONES_M) == 28


def test_words_seen_are_exact_sums_of_the_blocks_read():
    words = np.arange(1, 101, dtype=np.int64)  # block i holds i+1 words
    plan = make_plan(words, global_batch=4, epochs=2.0, words=None, seed=3)
    assert plan.steps == 50 and plan.limited_by == "epochs"
    assert plan.total_words == 2 * words.sum()
    assert np.array_equal(plan.cum_words, np.cumsum(words[plan.order].sum(axis=1)))
    for epoch in range(2):  # every block exactly once per epoch
        assert sorted(plan.order[epoch * 25:(epoch + 1) * 25].ravel()) == list(range(100))


def test_word_budget_stops_at_first_step_reaching_it():
    words = np.full(100, 10, dtype=np.int64)
    plan = make_plan(words, global_batch=4, epochs=10.0, words=1_001, seed=0)
    assert plan.limited_by == "words"
    assert plan.cum_words[-1] >= 1_001 > plan.cum_words[-2]
    assert plan.steps == 26  # 40 words per step


def test_epoch_cap_enforced_and_fractional_epochs():
    words = np.ones(64, dtype=np.int64)
    with pytest.raises(ValueError, match="<= 10"):
        make_plan(words, 4, 10.5, None, 0)
    assert make_plan(words, 4, 0.5, None, 0).steps == 8
    with pytest.raises(ValueError, match="needs 128"):
        make_plan(words, 128, 1.0, None, 0)


def test_milestones_placed_where_words_first_cross():
    words = np.full(1000, 1000, dtype=np.int64)  # 1,000 words per block
    plan = make_plan(words, global_batch=3, epochs=1.0, words=None, seed=0)  # 3,000 words per step
    ms = milestone_steps(plan.cum_words, scale=0.001)  # milestones at 1,000 x N words
    steps_by_name = {name: step for step, names in ms.items() for name in names}
    for name, step in steps_by_name.items():
        threshold = int(name[5:-1]) * 1000
        assert plan.cum_words[step] >= threshold
        assert step == 0 or plan.cum_words[step - 1] < threshold
    # 1k, 2k, 3k are all first reached after step 0 (3,000 words): one step, three names
    assert ms[0] == ["chck_1M", "chck_2M", "chck_3M"]
    assert "chck_900M" in steps_by_name and "chck_1000M" not in steps_by_name  # 999,000 words in total


def test_step_budget_reads_exactly_that_many_steps():
    """train.steps: the recipe's step count, whatever the corpus size; blocks still once per epoch."""
    words = np.arange(1, 101, dtype=np.int64)
    plan = make_plan(words, global_batch=8, epochs=1.0, words=None, seed=1, steps=30)  # 240 blocks: 2.4 epochs
    assert plan.steps == 30 and plan.limited_by == "steps" and plan.epochs_planned == pytest.approx(2.4)
    for epoch in range(2):
        assert sorted(plan.order.ravel()[epoch * 100:(epoch + 1) * 100]) == list(range(100))
    assert np.array_equal(plan.order, make_plan(words, 8, 1.0, None, 1, steps=40).order[:30])  # a prefix of longer runs
    with pytest.raises(ValueError, match=r"train.steps: 126 steps of 8 blocks read the 100 training blocks 10.08 times"):
        make_plan(words, 8, 1.0, None, 1, steps=126)


def test_steps_and_words_are_exclusive():
    from babblelm.config import load_config
    from babblelm.configbase import ConfigError

    with pytest.raises(ConfigError, match="train.steps: set train.steps or train.words, not both"):
        load_config(raw={"data": {"corpus": "x"}, "train": {"steps": 10, "words": 1000}})
