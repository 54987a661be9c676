"""The Llama-style decoder: the mask helpers, the preset's size, the initialisation, and its mapping
onto transformers' LlamaForCausalLM (the form `babble export` ships). The checks every architecture
passes are in tests/contract.py."""

import pytest
import torch

from babblelm.models.layers import causal_mask, position_ids_from_mask
from babblelm.models.native import as_native, probe_difference
from babblelm.models.registry import count_parameters
from babblelm.models.transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM
from contract import padded_batch, random_ids

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


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30, num_attention_heads=4), "divisible by num_attention_heads"),
    (dict(num_attention_heads=4, num_key_value_heads=3), "multiple of num_key_value_heads"),
    (dict(hidden_size=24, num_attention_heads=8), "must be even"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be >= 1"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
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


@pytest.mark.parametrize("overrides", [{}, dict(num_key_value_heads=None), dict(tie_word_embeddings=True),
                                       dict(rope_theta=500.0, rms_norm_eps=1e-6)])
@torch.no_grad()
def test_maps_onto_llama_with_equal_logits(overrides):
    model = tiny_model(**overrides)
    llama, why = as_native("transformer", model)
    assert llama is not None, why
    assert probe_difference(model, llama) < 1e-5
    ids, mask = padded_batch([random_ids(1, 9), random_ids(1, 4, seed=3)], "left")
    ours, theirs = model(ids, attention_mask=mask).logits, llama(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(theirs[mask.bool()], ours[mask.bool()], atol=1e-5, rtol=0)
    long_ids = random_ids(1, 80)  # past max_position_embeddings=64: both extend their rotary positions
    torch.testing.assert_close(llama(long_ids).logits, model(long_ids).logits, atol=1e-4, rtol=0)
