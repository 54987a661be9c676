"""babblelm models that transformers implements natively: the Transformer as `LlamaForCausalLM`, GPT-2
as `GPT2LMHeadModel`. Such a folder needs no remote code: it opens with `trust_remote_code=False`,
in vLLM, SGLang and every converter of those families.

- The Transformer is a Llama decoder under other class names: the same parameter names and shapes
  (`model.layers.N.self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, ...), RMSNorm in float32,
  rotary pairs (i, i + d/2), SwiGLU, no biases; its weights load into `LlamaForCausalLM` unchanged.
- GPT-2 keeps GPT-2's names inside each block (`ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`,
  `mlp.c_fc`, `mlp.c_proj`); `gpt2_weights` renames the four outer prefixes (`GPT2_PREFIXES`) and
  transposes the weight matrices of `c_attn`, `c_proj` and `c_fc` (`GPT2_TRANSPOSED`), which GPT-2
  keeps as Conv1D (in, out) where babblelm has nn.Linear (out, in). Biases, norms and embeddings
  are copied as they are.

`NATIVE[arch].config` writes the config.json that every transformers from 4.51 on reads alike
(`torch_dtype`, Llama's `rope_theta` at the top level); `as_native` builds the native model in the
running transformers and checks that its logits equal babblelm's on a probe batch, so a mapping
that stops holding is caught at export time rather than by a user. `from_native` goes back: a
loaded native model of babblelm's shape becomes babblelm's own (whose decoding contract `babble
generate` and `babble serve` use), through `NATIVE[arch].settings` and `.own_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

PROBE_TOLERANCE = 1e-4  # max |logit difference| accepted between the native model and babblelm
GPT2_PREFIXES = (("model.embed_tokens.", "transformer.wte."), ("model.embed_positions.", "transformer.wpe."),
                 ("model.layers.", "transformer.h."), ("model.norm.", "transformer.ln_f."))
GPT2_TRANSPOSED = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _common(config) -> dict:
    """The settings every native config.json shares."""
    return {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
            "pad_token_id": config.pad_token_id, "tie_word_embeddings": config.tie_word_embeddings,
            "initializer_range": config.initializer_range, "torch_dtype": "float32", "use_cache": True}


def llama_config(config) -> dict:
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
        **_common(config),
    }


def gpt2_config(config) -> dict:
    """The config.json of the GPT2LMHeadModel equal to a babblelm GPT-2."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.max_position_embeddings,
        "n_embd": config.hidden_size,
        "n_layer": config.num_hidden_layers,
        "n_head": config.num_attention_heads,
        "n_inner": config.intermediate_size,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "embd_pdrop": config.embd_pdrop,
        "attn_pdrop": config.attn_pdrop,
        "resid_pdrop": config.resid_pdrop,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        **_common(config),
    }


def gpt2_weights(state: dict, back: bool = False) -> dict:
    """babblelm GPT-2 weights under GPT2LMHeadModel's names, the Conv1D matrices transposed (`back`: the
    other way)."""
    out = {}
    for name, tensor in state.items():
        for ours, theirs in GPT2_PREFIXES:
            source, target = (theirs, ours) if back else (ours, theirs)
            if name.startswith(source):
                name = target + name[len(source):]
                break
        out[name] = tensor.t().contiguous() if name.endswith(GPT2_TRANSPOSED) else tensor
    return out


def _common_settings(config) -> dict:
    return {name: getattr(config, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id",
                                                     "tie_word_embeddings", "initializer_range")}


def llama_settings(config) -> dict:
    """babblelm Transformer settings of a loaded LlamaConfig; ValueError if it uses what babblelm's lacks."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    _same_shape("Llama", [("rope scaling", rope.get("rope_type", "default") == "default"),
                          ("hidden_act", config.hidden_act == "silu"), ("attention_bias", not config.attention_bias),
                          ("mlp_bias", not getattr(config, "mlp_bias", False)),
                          ("head_dim", getattr(config, "head_dim", None) in (None, config.hidden_size
                                                                             // config.num_attention_heads))])
    return {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads, "intermediate_size": config.intermediate_size,
            "max_position_embeddings": config.max_position_embeddings, "rms_norm_eps": config.rms_norm_eps,
            "rope_theta": rope.get("rope_theta", getattr(config, "rope_theta", None) or 10000.0),
            **_common_settings(config)}


def gpt2_settings(config) -> dict:
    """babblelm GPT-2 settings of a loaded GPT2Config; ValueError if it uses what babblelm's lacks."""
    _same_shape("GPT-2", [("activation_function", config.activation_function in ("gelu_new", "gelu_pytorch_tanh")),
                          ("scale_attn_weights", config.scale_attn_weights),
                          ("scale_attn_by_inverse_layer_idx", not config.scale_attn_by_inverse_layer_idx)])
    return {"vocab_size": config.vocab_size, "hidden_size": config.n_embd, "num_hidden_layers": config.n_layer,
            "num_attention_heads": config.n_head, "intermediate_size": config.n_inner or 4 * config.n_embd,
            "max_position_embeddings": config.n_positions, "layer_norm_epsilon": config.layer_norm_epsilon,
            "embd_pdrop": config.embd_pdrop, "attn_pdrop": config.attn_pdrop, "resid_pdrop": config.resid_pdrop,
            **_common_settings(config)}


def _same_shape(family: str, checks: list[tuple[str, bool]]) -> None:
    different = [name for name, same in checks if not same]
    if different:
        raise ValueError(f"this {family} model is not of a babblelm architecture's shape ({', '.join(different)} "
                         "differ)")


@dataclass(frozen=True)
class Native:
    """How an architecture ships natively: transformers' class and model_type, its config.json and the
    weight mapping; back again: babblelm's settings of a loaded native config and babblelm's weights."""

    class_name: str
    model_type: str
    config: Callable[[object], dict]
    weights: Callable[[dict], dict]
    settings: Callable[[object], dict]
    own_weights: Callable[[dict], dict]


NATIVE = {"transformer": Native("LlamaForCausalLM", "llama", llama_config, dict, llama_settings, dict),
          "gpt2": Native("GPT2LMHeadModel", "gpt2", gpt2_config, gpt2_weights, gpt2_settings,
                         lambda state: gpt2_weights(state, back=True))}


def as_native(arch_name: str, model) -> tuple[torch.nn.Module | None, str]:
    """(transformers' native model holding `model`'s weights, "") or (None, why not)."""
    import transformers

    native = NATIVE[arch_name]
    cls = getattr(transformers, native.class_name)
    theirs = cls(cls.config_class(**native.config(model.config))).eval()
    missing, unexpected = theirs.load_state_dict(native.weights(model.state_dict()), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or unexpected:
        return None, f"weights do not map onto {native.class_name} (missing {missing}, unexpected {unexpected})"
    diff = probe_difference(model, theirs)
    if diff > PROBE_TOLERANCE:
        return None, f"{native.class_name}'s logits differ from babblelm's by {diff:.2e} (> {PROBE_TOLERANCE:g})"
    return theirs, ""


@torch.no_grad()
def probe_difference(model, other) -> float:
    """Max |logit difference| of two models on a fixed, partly left-padded probe batch (both given the
    positions of the real tokens, which transformers' models do not derive from the mask)."""
    generator = torch.Generator().manual_seed(0)
    length = min(24, model.config.max_position_embeddings)
    ids = torch.randint(0, model.config.vocab_size, (2, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, : length // 3] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    was_training = model.training
    model.eval()
    mine = model(ids, attention_mask=mask, use_cache=False).logits
    model.train(was_training)
    theirs = other(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
    real = mask.bool()
    return float((mine[real] - theirs[real]).abs().max())


def from_native(model):
    """`model` as babblelm's own class: a native model (`NATIVE`) of a babblelm architecture's shape
    becomes that architecture's model with its weights; any other model (another family, or a Llama or GPT-2
    of another shape) is returned as it is."""
    from .registry import get

    model_type = getattr(model.config, "model_type", None)
    arch = next((name for name, native in NATIVE.items() if native.model_type == model_type), None)
    if arch is None:
        return model
    native, babble_arch = NATIVE[arch], get(arch)
    try:
        settings = native.settings(model.config)
    except ValueError:  # another shape: it stays transformers' model (decoded one sequence at a time)
        return model
    babble = babble_arch.model_class(babble_arch.config_class(**settings))
    babble.load_state_dict(native.own_weights(model.state_dict()))
    babble.generation_config = model.generation_config
    return babble.to(device=model.device, dtype=model.dtype).eval()
