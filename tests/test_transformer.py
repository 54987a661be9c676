"""The Llama-style decoder: cache/no-cache agreement, padding, loss, tying, config checks,
gradient checkpointing and loading an exported folder as remote code without babblelm."""

import warnings

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from babblelm.models.layers import causal_mask, position_ids_from_mask
from babblelm.models.registry import count_parameters
from babblelm.models.transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM
from model_checks import (assert_greedy_generate_equals_recomputation, assert_left_padded_generate_matches_single_prompts,
                          assert_padded_batch_matches_unpadded, random_ids)
from remote_code import assert_loads_without_babblelm

VOCAB = 97


def tiny_config(**overrides) -> BabbleTransformerConfig:
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=64, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=None)
    return BabbleTransformerConfig(**{**shape, **overrides})


def tiny_model(seed: int = 0, **overrides) -> BabbleTransformerForCausalLM:
    torch.manual_seed(seed)
    return BabbleTransformerForCausalLM(tiny_config(**overrides)).eval()


def test_mask_helpers_on_left_padding_with_a_cache():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])  # 1 cached + 3 new tokens per row
    assert position_ids_from_mask(mask, 3).tolist() == [[0, 0, 1], [1, 2, 3]]
    allowed = causal_mask(mask, q_len=3, past_len=1, device=torch.device("cpu"))
    assert allowed.shape == (2, 1, 3, 4)
    assert allowed[:, 0].int().tolist() == [
        [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]],  # padding queries see only themselves
        [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]],
    ]


@torch.no_grad()
def test_cached_decoding_matches_full_sequence():
    model, ids = tiny_model(), random_ids(2, 12)
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :5], use_cache=True)
    pieces, cache = [out.logits], out.past_key_values
    for start, stop in [(5, 6), (6, 9), (9, 10), (10, 11), (11, 12)]:  # single tokens and a 3-token chunk
        out = model(ids[:, start:stop], past_key_values=cache, use_cache=True)
        pieces.append(out.logits)
    assert cache.get_seq_length() == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


def test_greedy_generate_with_cache_equals_recomputation():
    assert_greedy_generate_equals_recomputation(tiny_model(), random_ids(2, 6), new_tokens=10)


def test_left_padded_generate_matches_single_prompts():
    assert_left_padded_generate_matches_single_prompts(tiny_model(), [random_ids(1, 4, seed=2), random_ids(1, 7, seed=3)])


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_unpadded_sequences(side):
    assert_padded_batch_matches_unpadded(tiny_model(), [random_ids(1, n, seed=n) for n in (5, 9, 3)], side)


@torch.no_grad()
def test_unexpected_keyword_arguments_are_ignored():
    model, ids = tiny_model(), random_ids(2, 8)
    plain = model(ids, attention_mask=torch.ones_like(ids)).logits
    extra = model(ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                  cache_position=torch.arange(8), return_dict=True, some_future_flag="x").logits
    torch.testing.assert_close(extra, plain, atol=0, rtol=0)


@torch.no_grad()
def test_hidden_states_and_logits_to_keep():
    model, ids = tiny_model(), random_ids(2, 8)
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(model.lm_head(out.hidden_states[-1]), out.logits)
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, out.logits[:, -1:])


def test_loss_is_mean_cross_entropy_of_shifted_labels():
    model, ids = tiny_model(), random_ids(3, 10)
    labels = ids.clone()
    labels[0, :4] = -100
    labels[2, 7:] = -100
    out = model(ids, labels=labels)
    log_probs = out.logits[:, :-1].log_softmax(-1)
    targets, keep = labels[:, 1:], labels[:, 1:] != -100
    token_nll = -log_probs.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    assert torch.allclose(out.loss, token_nll[keep].sum() / keep.sum(), atol=1e-6)


def test_tied_embeddings_share_storage():
    tied, untied = tiny_model(tie_word_embeddings=True), tiny_model(tie_word_embeddings=False)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    assert count_parameters(untied) - count_parameters(tied) == VOCAB * 32


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30, num_attention_heads=4), "divisible by num_attention_heads"),
    (dict(num_attention_heads=4, num_key_value_heads=3), "multiple of num_key_value_heads"),
    (dict(hidden_size=24, num_attention_heads=8), "must be even"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be >= 1"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(StrictDataclassError, match=message):
        tiny_config(**bad)


def test_parameter_count_of_26m_preset_shape():
    config = BabbleTransformerConfig(vocab_size=16000, hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                                     intermediate_size=1536, tie_word_embeddings=False)
    with torch.device("meta"):
        n = count_parameters(BabbleTransformerForCausalLM(config))
    print(f"26M preset shape: {n:,} parameters")
    assert 25_000_000 <= n <= 27_000_000


def test_initialisation_scales_residual_outputs():
    model = tiny_model(hidden_size=128, intermediate_size=256, num_hidden_layers=8)
    layer = model.model.layers[3]
    assert model.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.mlp.down_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)  # / sqrt(2 * 8)
    assert torch.equal(layer.input_layernorm.weight, torch.ones(128))


def test_gradient_checkpointing_gives_same_gradients():
    model, ids = tiny_model(), random_ids(2, 12)
    model.train()
    attn_calls = []
    model.model.layers[0].self_attn.register_forward_hook(lambda *_: attn_calls.append(1))

    def grads():
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    assert len(attn_calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # v5 alias of activation_checkpointing_enable
        model.gradient_checkpointing_enable()
    checkpointed = grads()
    assert len(attn_calls) == 3  # forward, then recomputed during backward
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_export_loads_as_remote_code_without_babblelm(tmp_path, monkeypatch):
    model, ids = tiny_model(tie_word_embeddings=True), random_ids(2, 9)
    assert_loads_without_babblelm(model, ids, tmp_path, monkeypatch, {"transformer.py", "layers.py", "config.json", "model.safetensors"})
