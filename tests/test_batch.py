"""The batch arithmetic, owned by the config (`TrainSection.batch`): the global batch, each process's
share, the micro-batch and the passes actually taken; the dev evaluation's own batch; one split."""

import dataclasses

import numpy as np
import pytest
import torch

from babblelm.card import _batch
from babblelm.config import Batch, TrainSection, load_config
from babblelm.configbase import ConfigError
from babblelm.train import distributed
from babblelm.train.stepper import build_stepper


def test_global_batch_and_the_cpu_default():
    train = TrainSection(batch_size=4, grad_accum=2)
    assert train.global_batch == 8
    assert train.batch() == Batch(size=8, per_rank=8, micro=4) and train.batch().accumulation == 2
    two = train.batch(processes=2)  # each process holds 4 = batch_size: one pass, not grad_accum's two
    assert (two.per_rank, two.micro, two.accumulation) == (4, 4, 1)
    assert TrainSection(batch_size=6, grad_accum=1).batch(processes=3) == Batch(6, 2, 2)


def test_micro_batch_is_rounded_down_to_a_divisor_and_wins_over_the_probe():
    train = TrainSection(batch_size=4, grad_accum=2, micro_batch=3)
    probed = []
    batch = train.batch(1, fits=lambda m: probed.append(m) or True)
    assert (batch.micro, batch.accumulation) == (2, 4) and probed == []
    assert TrainSection(batch_size=4, grad_accum=2, micro_batch=100).batch().micro == 8


def test_the_memory_probe_tries_divisors_from_the_largest_down():
    tried = []
    batch = TrainSection(batch_size=24, grad_accum=1).batch(1, fits=lambda m: tried.append(m) or m <= 7)
    assert tried == [24, 12, 8, 6] and (batch.micro, batch.accumulation) == (6, 4)
    assert TrainSection(batch_size=8, grad_accum=4).batch(2, fits=lambda m: True) == Batch(32, 16, 16)
    with pytest.raises(RuntimeError, match="not even a micro-batch of 1"):
        TrainSection(batch_size=4).batch(1, fits=lambda m: False)


def test_a_batch_that_does_not_divide_between_processes_is_refused():
    with pytest.raises(ValueError, match=r"train.batch_size x train.grad_accum = 6 sequences .* 4 processes"):
        TrainSection(batch_size=3, grad_accum=2).batch(processes=4)


def test_dev_batch_defaults_to_batch_size_and_has_its_own_setting():
    assert (TrainSection(batch_size=8, dev_batches=3).dev_batch, TrainSection(batch_size=8, dev_batches=3).dev_blocks) == (8, 24)
    train = TrainSection(batch_size=8, dev_batch_size=32, dev_batches=2)
    assert (train.dev_batch, train.dev_blocks) == (32, 64)
    raw = {"data": {"corpus": "unused"}, "train": {"dev_batch_size": 0}}
    with pytest.raises(ConfigError, match="train.dev_batch_size: must be >= 1"):
        load_config(raw=raw)
    assert load_config(raw={**raw, "train": {"dev_batch_size": 5}}).train.dev_batch == 5


def test_stepper_split_takes_this_process_slice_in_micro_batches():
    cfg = load_config(raw={"data": {"corpus": "unused", "seq_len": 8}, "tokenizer": {"vocab_size": 300},
                           "model": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                     "intermediate_size": 64, "max_position_embeddings": 8},
                           "train": {"batch_size": 2, "grad_accum": 4}})
    arch, args = cfg.model_section
    model = arch.model_class(arch.make_config(args, 300, 0, 1, 2))
    stepper = build_stepper(cfg, model, torch.device("cpu"), distributed.Dist(), 10, 8)
    rows = np.arange(8)[:, None].repeat(8, axis=1)
    assert stepper.batch == Batch(8, 8, 2)
    assert [m[:, 0].tolist() for m in stepper.split(rows)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    second = dataclasses.replace(stepper, batch=cfg.train.batch(processes=2), rank=1)  # rank 1 of 2
    assert [m[:, 0].tolist() for m in second.split(rows)] == [[4, 5], [6, 7]]
    with pytest.raises(ValueError, match="holds 8 rows"):
        stepper.split(rows[:6])


def test_the_card_reads_tokens_per_step_through_the_config():
    assert _batch({"batch_size": 4, "grad_accum": 3}, 32) == "12 sequences x 32 tokens = 384 tokens per step"
    assert _batch({}, 512) == f"16 sequences x 512 tokens = {16 * 512:,} tokens per step"  # the defaults
    assert "not readable" in _batch({"batch_size": "big"}, 32)
