"""The Conv-Routed Induction LM: occurrence index vs brute force, causality, padding-side
agnosticism, linear memory (a 16k-token forward), cached decoding, export as remote code,
and a tiny training run with hyperparameters.json in its checkpoints."""

import json
import warnings

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from torch.utils._python_dispatch import TorchDispatchMode

from babblelm.config import load_config
from babblelm.export import export_model
from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM, previous_occurrences
from babblelm.models.registry import count_parameters
from babblelm.train.loop import train
from conftest import tiny_raw
from model_checks import (assert_greedy_generate_equals_recomputation, assert_left_padded_generate_matches_single_prompts,
                          assert_padded_batch_matches_unpadded, padded_batch)
from model_checks import random_ids as any_ids
from remote_code import assert_loads_without_babblelm

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


@torch.no_grad()
def test_changing_a_future_token_never_changes_earlier_logits():
    model, ids = tiny_model(), random_ids(2, 30, vocab=6)
    base = model(ids, use_cache=False).logits
    for t in (0, 7, 15, 29):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % 6 + 2
        logits = model(changed, use_cache=False).logits
        torch.testing.assert_close(logits[:, :t], base[:, :t], atol=0, rtol=0)
        assert not torch.allclose(logits[:, t:], base[:, t:])


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_unpadded_sequences(side):
    assert_padded_batch_matches_unpadded(tiny_model(), [random_ids(1, n, seed=n, vocab=8) for n in (5, 19, 11)], side)


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


@torch.no_grad()
def test_cached_decoding_matches_full_sequence():
    model, ids = tiny_model(), random_ids(2, 24, vocab=7)
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :6], use_cache=True)
    pieces, cache = [out.logits], out.past_key_values
    for start, stop in [(6, 7), (7, 12), (12, 13), (13, 14), (14, 24)]:  # single tokens and chunks
        out = model(ids[:, start:stop], past_key_values=cache, use_cache=True)
        pieces.append(out.logits)
    assert cache.get_seq_length() == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


def test_greedy_generate_with_cache_equals_recomputation():
    assert_greedy_generate_equals_recomputation(tiny_model(), random_ids(2, 6, vocab=7), new_tokens=12)


def test_left_padded_generate_matches_single_prompts():
    prompts = [random_ids(1, 4, seed=2, vocab=7), random_ids(1, 9, seed=3, vocab=7)]
    assert_left_padded_generate_matches_single_prompts(tiny_model(), prompts, new_tokens=8)


def test_gradient_checkpointing_gives_same_gradients():
    model, ids = tiny_model(), random_ids(2, 16, vocab=7)
    model.train()

    def grads():
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    assert plain["model.layers.0.induction.sink"].abs().sum() > 0  # the mixer is in the graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable()
    checkpointed = grads()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30), "divisible by num_attention_heads"),
    (dict(conv_groups=5), "divisible by conv_groups"),
    (dict(conv_dilations=[1, 0]), "conv_dilations must be"),
    (dict(induction_memory=0), "induction_memory must be >= 1"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(StrictDataclassError, match=message):
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


def test_export_loads_as_remote_code_without_babblelm(tmp_path, monkeypatch):
    model, ids = tiny_model(), random_ids(2, 9, vocab=7)
    assert_loads_without_babblelm(model, ids, tmp_path, monkeypatch, {"induction.py", "layers.py", "config.json", "model.safetensors"})


INDUCTION_MODEL = {"arch": "induction", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "intermediate_size": 64, "induction_memory": 3, "conv_groups": 4, "max_position_embeddings": 32}


def test_tiny_training_run_learns_and_saves_hyperparameters(small_corpus, tmp_path):
    run = tmp_path / "run"
    result = train(load_config(raw=tiny_raw(small_corpus, run, model=INDUCTION_MODEL, train={"epochs": 0.25})), progress=False)
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < losses[0] - 0.5
    hparams = json.loads((result.final_dir / "hyperparameters.json").read_text())
    assert hparams["model"]["arch"] == "induction" and hparams["optim"]["lr"] == 3e-3
    assert set(hparams) == {"model", "optim", "schedule", "train"}
    milestone = sorted(run.glob("checkpoints/chck_*"))[0]
    assert json.loads((milestone / "hyperparameters.json").read_text()) == hparams
    out = export_model(run, tmp_path / "hf")
    assert json.loads((out / "hyperparameters.json").read_text()) == hparams
