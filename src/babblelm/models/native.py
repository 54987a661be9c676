"""babblelm models that transformers implements natively: the Transformer as `LlamaForCausalLM`.

babblelm's Transformer is a Llama decoder under other class names: the same parameter names and
shapes (`model.layers.N.self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, ...), RMSNorm in
float32, rotary pairs (i, i + d/2), SwiGLU, no biases. So its weights load into
`LlamaForCausalLM` unchanged, and the folder needs no remote code: it opens with
`trust_remote_code=False`, in vLLM, SGLang and every Llama converter.

`llama_config` writes the config that every transformers from 4.51 on reads alike (`rope_theta`
at the top level, `torch_dtype`); `as_llama` builds the Llama model in the running transformers and
checks that its logits equal babblelm's on a probe batch, so a mapping that stops holding is caught
at export time rather than by a user. `from_native` goes back: a loaded Llama of babblelm's shape
becomes babblelm's Transformer (whose decoding contract `babble generate` and `babble serve` use).
"""

from __future__ import annotations

import torch

from .transformer import BabbleTransformerConfig, BabbleTransformerForCausalLM

PROBE_TOLERANCE = 1e-4  # max |logit difference| accepted between LlamaForCausalLM and babblelm


def llama_config(config: BabbleTransformerConfig) -> dict:
    """The config.json of the Llama model equal to a babblelm Transformer."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": config.initializer_range,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "torch_dtype": "float32",
        "use_cache": True,
    }


def as_llama(model) -> tuple[torch.nn.Module | None, str]:
    """(LlamaForCausalLM holding `model`'s weights, "") or (None, why not)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(**llama_config(model.config))).eval()
    missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or unexpected:
        return None, f"weights do not map onto LlamaForCausalLM (missing {missing}, unexpected {unexpected})"
    diff = probe_difference(model, llama)
    if diff > PROBE_TOLERANCE:
        return None, f"LlamaForCausalLM's logits differ from babblelm's by {diff:.2e} (> {PROBE_TOLERANCE:g})"
    return llama, ""


@torch.no_grad()
def probe_difference(model, other) -> float:
    """Max |logit difference| of two models on a fixed, partly left-padded probe batch."""
    generator = torch.Generator().manual_seed(0)
    length = min(24, model.config.max_position_embeddings)
    ids = torch.randint(0, model.config.vocab_size, (2, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, : length // 3] = 0
    was_training = model.training
    model.eval()
    mine = model(ids, attention_mask=mask, use_cache=False).logits
    model.train(was_training)
    theirs = other(input_ids=ids, attention_mask=mask, use_cache=False).logits
    real = mask.bool()
    return float((mine[real] - theirs[real]).abs().max())


def from_native(model):
    """`model` as babblelm's own class: a `LlamaForCausalLM` of babblelm's Transformer shape becomes a
    `BabbleTransformerForCausalLM` with its weights; a babblelm model is returned as it is. A Llama
    using what babblelm's Transformer lacks (biases, rope scaling, another activation) is a ValueError."""
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        return model
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    different = [name for name, ok in [
        ("rope scaling", rope.get("rope_type", "default") == "default"), ("hidden_act", config.hidden_act == "silu"),
        ("attention_bias", not config.attention_bias), ("mlp_bias", not getattr(config, "mlp_bias", False)),
        ("head_dim", getattr(config, "head_dim", None) in (None, config.hidden_size // config.num_attention_heads)),
    ] if not ok]
    if different:
        raise ValueError(f"this Llama model is not of babblelm's Transformer shape ({', '.join(different)} differ)")
    babble = BabbleTransformerForCausalLM(BabbleTransformerConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, num_key_value_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.max_position_embeddings,
        rope_theta=theta, rms_norm_eps=config.rms_norm_eps, initializer_range=config.initializer_range,
        tie_word_embeddings=config.tie_word_embeddings, bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id))
    babble.load_state_dict(model.state_dict())
    babble.generation_config = model.generation_config
    return babble.to(device=model.device, dtype=model.dtype).eval()
