"""The Conv-Routed Induction LM: occurrence index vs brute force, linear memory (a 16k-token
forward), config checks and the preset's size. The checks every architecture passes are in
tests/contract.py."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from babblelm.config import load_config
from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM, previous_occurrences
from babblelm.models.registry import count_parameters
from contract import padded_batch
from contract import random_ids as any_ids

VOCAB = 23  # small, so tokens repeat often and the induction mixer has candidates


def tiny_config(**overrides) -> BabbleInductionConfig:
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 induction_memory=3, conv_groups=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1)
    return BabbleInductionConfig(**{**shape, **overrides})


def tiny_model(seed: int = 0, **overrides) -> BabbleInductionForCausalLM:
    torch.manual_seed(seed)
    model = BabbleInductionForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():  # non-zero sinks, so abstaining and copying both matter
        for layer in model.model.layers:
            layer.induction.sink.normal_()
    return model


def random_ids(*shape, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    return any_ids(*shape, seed=seed, vocab=vocab)


def brute_force_occurrences(ids, mask, memory):
    out = torch.full((*ids.shape, memory), -1, dtype=torch.long)
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if mask[b, t]:
                earlier = [p for p in range(t - 1, -1, -1) if mask[b, p] and ids[b, p] == ids[b, t]][:memory]
                out[b, t, : len(earlier)] = torch.tensor(earlier, dtype=torch.long)
    return out


@pytest.mark.parametrize("side", ["left", "right"])
def test_occurrence_index_matches_brute_force(side):
    for trial in range(5):
        lengths = torch.randint(1, 40, (4,), generator=torch.Generator().manual_seed(trial)).tolist()
        seqs = [random_ids(n, seed=100 * trial + n, vocab=6) for n in lengths]
        ids, mask = padded_batch(seqs, side, pad=3)  # the pad id is also a real token id
        keys = torch.where(mask.bool(), ids, -1)
        for memory in (1, 4):
            got = previous_occurrences(keys, memory)[0]
            assert torch.equal(got, brute_force_occurrences(ids, mask, memory)), (trial, memory)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@torch.no_grad()
def test_memory_grows_linearly_a_16k_token_forward_runs_on_cpu():
    model = tiny_model(max_position_embeddings=16384, vocab_size=97)
    largest = {}
    for seq in (4096, 16384):
        ids = random_ids(1, seq, vocab=97)
        with LargestTensor() as probe:
            logits = model(ids, use_cache=False).logits
        assert torch.isfinite(logits).all()
        largest[seq] = probe.largest
    assert largest[16384] < 16384 * 16384 / 64  # nothing close to a T x T matrix
    assert largest[16384] == pytest.approx(4 * largest[4096], rel=0.01)  # 4x the tokens, 4x the biggest tensor


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30), "divisible by num_attention_heads"),
    (dict(conv_groups=5), "divisible by conv_groups"),
    (dict(conv_dilations=[1, 0]), "conv_dilations must be"),
    (dict(induction_memory=0), "induction_memory must be >= 1"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**bad)


def test_preset_parameter_count():
    cfg = load_config("configs/conv-induction-strict-small.yaml")
    from babblelm.models.registry import parse_model_section

    arch, args = parse_model_section(cfg.model)
    config = arch.make_config(args, vocab_size=cfg.tokenizer.vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    with torch.device("meta"):
        n = count_parameters(arch.model_class(config))
    print(f"conv-induction-strict-small: {n:,} parameters")
    assert config.dilations == (1, 2, 4) and config.induction_memory == 5 and config.tie_word_embeddings
    assert 11_000_000 <= n <= 13_000_000
