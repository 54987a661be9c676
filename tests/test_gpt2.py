"""GPT-2 (`arch: gpt2`): the same model as transformers' GPT2LMHeadModel, weight for weight, and the
TAAM reference's shape at the size its card reports. The architecture contract covers the rest."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from babblelm.models.native import GPT2_TRANSPOSED, as_native, gpt2_config, gpt2_weights, probe_difference
from babblelm.models.registry import count_parameters, get
from contract import padded_batch, random_ids, tiny_model

# The model factoredai/diffusion-babylm-eval@6816017 builds (references/scripts/train.py, configs/base.yaml):
# GPT2Config(vocab_size=32000, n_positions=512, n_embd=512, n_layer=6, n_head=8), everything else GPT-2's default.
REFERENCE = dict(vocab_size=32000, n_positions=512, n_embd=512, n_layer=6, n_head=8, bos_token_id=1, eos_token_id=2)


def test_reference_shape_has_the_cards_35_6m_parameters():  # the defaults are the reference shape
    arch = get("gpt2")
    ours = arch.model_class(arch.config_class(vocab_size=32000, bos_token_id=1, eos_token_id=2, pad_token_id=3))
    theirs = GPT2LMHeadModel(GPT2Config(**REFERENCE))
    assert count_parameters(ours) == sum(p.numel() for p in theirs.parameters()) == 35_561_472
    settings = gpt2_config(ours.config)
    for key in ("n_positions", "n_embd", "n_layer", "n_head", "activation_function", "resid_pdrop", "embd_pdrop",
                "attn_pdrop", "layer_norm_epsilon", "initializer_range", "tie_word_embeddings"):
        assert settings[key] == getattr(theirs.config, key), key
    assert settings["n_inner"] == 4 * theirs.config.n_embd  # GPT-2's n_inner None


def test_weights_map_one_to_one_onto_gpt2():
    model = tiny_model("gpt2")
    mapped = gpt2_weights(model.state_dict())
    reference = GPT2LMHeadModel(GPT2Config(**gpt2_config(model.config))).state_dict()
    assert set(mapped) == {k for k in reference if not k.endswith(".attn.bias")}  # GPT-2's causal-mask buffers
    for name, tensor in mapped.items():
        assert tensor.shape == reference[name].shape, name
    transposed = [n for n in mapped if n.endswith(GPT2_TRANSPOSED)]
    assert len(transposed) == 4 * model.config.num_hidden_layers


@pytest.mark.parametrize("overrides", [{}, dict(tie_word_embeddings=False), dict(layer_norm_epsilon=1e-3)])
@torch.no_grad()
def test_maps_onto_gpt2_with_equal_logits(overrides):
    model = tiny_model("gpt2", **overrides)
    gpt2, why = as_native("gpt2", model)
    assert gpt2 is not None, why
    assert type(gpt2).__name__ == "GPT2LMHeadModel" and probe_difference(model, gpt2) < 1e-5
    ids, mask = padded_batch([random_ids(1, 9), random_ids(1, 4, seed=3)], "right")
    ours, theirs = model(ids, attention_mask=mask).logits, gpt2(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(theirs[mask.bool()], ours[mask.bool()], atol=1e-5, rtol=0)
    prompt = random_ids(2, 5)
    assert torch.equal(model.generate(prompt, max_new_tokens=10, do_sample=False),
                       gpt2.generate(prompt, max_new_tokens=10, do_sample=False))


def test_dropout_acts_in_training_only():
    model = tiny_model("gpt2", embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1)
    ids = random_ids(2, 12)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids).logits)
        model.train()
        assert not torch.equal(model(ids).logits, model(ids).logits)


def test_initialisation_is_gpt2s():
    arch = get("gpt2")
    model = arch.model_class(arch.tiny_config(hidden_size=256, intermediate_size=1024, num_hidden_layers=8))
    block = model.model.layers[3]
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)  # / sqrt(2 x 8 layers)
    assert model.model.embed_positions.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(block.ln_1.weight, torch.ones(256)) and not block.ln_1.bias.any() and not block.attn.c_attn.bias.any()


@pytest.mark.parametrize("key, value, message", [
    ("num_attention_heads", 5, "hidden_size (32) must be divisible by num_attention_heads (5)"),
    ("attn_pdrop", 1.0, "attn_pdrop must be in [0, 1), got 1.0"),
    ("layer_norm_epsilon", 0.0, "layer_norm_epsilon must be > 0, got 0.0")])
def test_bad_settings_name_the_field(key, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        get("gpt2").tiny_config(**{key: value})


def test_training_with_dropout_resumes_exactly(small_corpus, tmp_path):
    """Dropout draws from torch's generator, which checkpoints save: an interrupted run resumes bit for bit."""
    from safetensors.torch import load_file

    from babblelm.config import load_config
    from babblelm.train.launch import train
    from conftest import tiny_raw

    def cfg(out, pdrop=0.1):
        raw = tiny_raw(small_corpus, out, train={"epochs": 0.3})
        raw["model"] = {"arch": "gpt2", **get("gpt2").spec.tiny, "embd_pdrop": pdrop, "attn_pdrop": pdrop, "resid_pdrop": pdrop}
        return load_config(raw=raw)

    full = train(cfg(tmp_path / "full"), progress=False)
    assert train(cfg(tmp_path / "cut"), progress=False, stop_after_steps=4).interrupted
    resumed = train(cfg(tmp_path / "cut"), resume=True, progress=False)
    a, b = load_file(full.final_dir / "model.safetensors"), load_file(resumed.final_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    plain = load_file(train(cfg(tmp_path / "plain", pdrop=0.0), progress=False).final_dir / "model.safetensors")
    assert not all(torch.equal(a[k], plain[k]) for k in a)  # the dropout was active
