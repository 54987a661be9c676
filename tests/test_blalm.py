"""BLaLM: every add-on switch gives the same logits with and without the recurrent cache and greedy
generation equals recomputation, blocked SWA equals dense SWA, presets have the paper's sizes, and
training logs the SWA modulation. The checks every architecture passes (with all add-ons on) are in
tests/contract.py."""

from pathlib import Path

import pytest
import torch

from babblelm.config import load_config
from babblelm.models.blalm import BlalmConfig, BlalmForCausalLM, swa_blocked, swa_dense
from babblelm.models.layers import CACHE_ARG
from babblelm.models.registry import count_parameters, parse_model_section
from contract import cache_of, padded_batch, random_ids

VOCAB = 97
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ADD_ONS = {
    "plain": {},
    "conv": dict(short_conv=True),
    "swa": dict(swa_window=4),
    "swa_memory": dict(swa_window=4, swa_memory_tokens=3),
    "swa_dynamic": dict(swa_window=4, swa_modulation="dynamic"),
    "swa_bounded": dict(swa_window=4, swa_modulation="bounded", short_conv=True),
    "hedgehog": dict(feature_map="hedgehog"),
}


def tiny_model(seed: int = 0, **overrides) -> BlalmForCausalLM:
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, chunk_size=4, pad_token_id=0, bos_token_id=1, eos_token_id=None)
    torch.manual_seed(seed)
    return BlalmForCausalLM(BlalmConfig(**{**shape, **overrides})).eval()


@pytest.mark.parametrize("add_on", ADD_ONS)
@torch.no_grad()
def test_cached_decoding_matches_full_sequence(add_on):
    model, ids = tiny_model(**ADD_ONS[add_on]), random_ids(2, 13)
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :5], use_cache=True)
    pieces, cache = [out.logits], cache_of(out)
    for start, stop in [(5, 6), (6, 9), (9, 10), (10, 13)]:  # single tokens and multi-token chunks
        out = model(ids[:, start:stop], use_cache=True, **{CACHE_ARG: cache})
        pieces.append(out.logits)
    assert cache.get_seq_length() == 13
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("add_on", ["plain", "swa_bounded", "swa_memory"])
@torch.no_grad()
def test_greedy_generate_with_cache_equals_recomputation(add_on):
    model, prompt = tiny_model(**ADD_ONS[add_on]), random_ids(2, 6)
    seq = prompt
    for _ in range(12):
        seq = torch.cat([seq, model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True), seq)


@pytest.mark.parametrize("add_on", ["conv", "swa_memory"])
@torch.no_grad()
def test_left_padded_generate_matches_single_prompts(add_on):
    model, prompts = tiny_model(**ADD_ONS[add_on]), [random_ids(1, 4, seed=2), random_ids(1, 7, seed=3)]
    ids, mask = padded_batch(prompts, "left")
    together = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    for row, prompt in enumerate(prompts):
        assert torch.equal(together[row, -6:], model.generate(prompt, max_new_tokens=6, do_sample=False)[0, -6:])


@pytest.mark.parametrize("seq,window,memory", [(16, 4, False), (23, 4, True), (50, 7, True), (9, 3, False)])
def test_blocked_sliding_window_attention_equals_dense(seq, window, memory):
    gen = torch.Generator().manual_seed(seq)
    q, k, v = (torch.randn(2, 3, seq, 8, generator=gen, requires_grad=True) for _ in range(3))
    valid = torch.rand(2, seq, generator=gen) > 0.3  # padding anywhere, including whole windows
    valid[1, : 2 * window] = False
    mem = tuple(torch.randn(3, 2, 8, generator=gen) for _ in range(2)) if memory else None
    dense, blocked = swa_dense(q, k, v, valid, window, mem), swa_blocked(q, k, v, valid, window, mem)
    torch.testing.assert_close(blocked, dense, atol=1e-5, rtol=0)
    weights = torch.randn(dense.shape, generator=gen)
    grads_dense = torch.autograd.grad((dense * weights).sum(), (q, k, v))
    grads_blocked = torch.autograd.grad((blocked * weights).sum(), (q, k, v))
    for a, b in zip(grads_blocked, grads_dense):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@torch.no_grad()
def test_long_sequences_use_the_blocked_form_and_match_cached_decoding():
    model, ids = tiny_model(swa_window=4, swa_memory_tokens=2, short_conv=True), random_ids(2, 60)
    full = model(ids, use_cache=False).logits  # 60 >= 4 windows: the blocked form
    out = model(ids[:, :10], use_cache=True)
    pieces, cache = [out.logits], cache_of(out)
    for start, stop in [*((t, t + 1) for t in range(10, 30)), (30, 60)]:  # single tokens, then a blocked chunk
        out = model(ids[:, start:stop], use_cache=True, **{CACHE_ARG: cache})
        pieces.append(out.logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


def test_chunk_size_does_not_change_the_function():
    ids = random_ids(2, 11)
    a, b = tiny_model(chunk_size=3)(ids).logits, tiny_model(chunk_size=16)(ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_modulation_is_learned_and_reported():
    model = tiny_model(swa_window=4, swa_modulation="bounded").train()
    assert model.extra_metrics() == {"swa_scale/0": 0.5, "swa_scale/1": 0.5}
    ids = random_ids(2, 12)
    model(ids, labels=ids).loss.backward()
    assert all(layer.mixer.swa_gate.grad is not None for layer in model.model.layers)
    assert tiny_model().extra_metrics() == {}


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30), "divisible by num_attention_heads"),
    (dict(hidden_size=36), "must be even for rotary embeddings"),
    (dict(swa_memory_tokens=2), "need sliding-window attention"),
    (dict(swa_modulation="bounded"), "need sliding-window attention"),
    (dict(chunk_size=0), "chunk_size must be >= 1"),
    (dict(feature_map="cosine"), "feature_map must be one of none, hedgehog, got 'cosine'"),
])
def test_config_rejects_bad_settings(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**bad)


def test_yaml_section_checks_names_and_choices():
    from babblelm.configbase import ConfigError

    with pytest.raises(ConfigError, match="model.feature_map"):
        parse_model_section({"arch": "blalm", "feature_map": "cosine"})
    with pytest.raises(ConfigError, match="need sliding-window"):
        parse_model_section({"arch": "blalm", "swa_modulation": "dynamic"})


def test_mlstm_kernels_backend_needs_cuda_or_the_package():
    from babblelm.models.mlstm import mlstm_kernels_available

    if not mlstm_kernels_available():
        with pytest.raises(ImportError, match=r"babblelm\[gpu\]"):
            tiny_model(mlstm_backend="mlstm_kernels")
    else:
        with pytest.raises(RuntimeError, match="CUDA only"):
            tiny_model(mlstm_backend="mlstm_kernels")(random_ids(1, 5).cpu(), use_cache=False)


@pytest.mark.parametrize("preset, target", [("blalm-270m", 270e6), ("blalm-strict-small", 270e6),
                                            ("blalm-strict", 270e6), ("transformer-250m", 250e6)])
def test_preset_parameter_counts(preset, target):
    cfg = load_config(CONFIGS / f"{preset}.yaml")
    arch, args = cfg.model_section
    config = arch.make_config(args, vocab_size=cfg.tokenizer.vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device("meta"):
        n = count_parameters(arch.model_class(config))
    print(f"{preset}: {n:,} parameters")
    assert abs(n - target) / target <= 0.03


def test_training_logs_and_plots_modulation(small_corpus, tmp_path, capsys):
    import json

    from conftest import tiny_raw

    from babblelm.cli import main
    from babblelm.train.launch import train

    raw = tiny_raw(small_corpus, tmp_path / "run", model={"arch": "blalm", "swa_window": 8, "swa_modulation": "dynamic",
                                                          "short_conv": True, "chunk_size": 16})
    raw["train"].update(dev_every=0)
    result = train(load_config(raw=raw), progress=False, stop_after_steps=5)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert logged and {"swa_scale/0", "swa_scale/1"} <= set(logged[-1])
    assert logged[-1]["swa_scale/0"] != 1.0  # moved away from its initial value
    # the per-layer curves, drawn at the end of training and again by `babble plot`
    assert (result.run_dir / "loss.png").stat().st_size and (result.run_dir / "swa_scale.png").stat().st_size
    (result.run_dir / "swa_scale.png").unlink()
    assert main(["plot", str(result.run_dir)]) == 0
    assert (result.run_dir / "swa_scale.png").is_file() and f"wrote {result.run_dir / 'swa_scale.png'}" in capsys.readouterr().out
