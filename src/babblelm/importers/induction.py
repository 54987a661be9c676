"""The Conv-Routed Induction LM's reference format (github joshua-taylor/conv-induction-babylm,
`modeling_induction.py`; config.json `model_type: induction_lm`) -> babblelm's `induction` architecture,
which computes the same function (docs/architectures.md, "Conv-Routed Induction LM").

This file is the one place that knows both sets of names: the config keys (`CONFIG_KEYS`) and the
tensor names (`NAMES`). A key missing from the source's config.json takes the reference's default,
as the reference's own loader would.
"""

from __future__ import annotations

from .spec import Importer, NameMap

# reference config key -> (babblelm config key, the reference's default)
CONFIG_KEYS = {
    "vocab_size": ("vocab_size", 8000),
    "d_model": ("hidden_size", 384),
    "d_ff": ("intermediate_size", 1536),
    "n_layers": ("num_hidden_layers", 3),
    "n_heads": ("num_attention_heads", 4),
    "max_position_embeddings": ("max_position_embeddings", 512),
    "conv_dilations": ("conv_dilations", [1, 2, 4]),
    "conv_kernel": ("conv_kernel_size", 3),
    "dyn_groups": ("conv_groups", 16),
    "match_m": ("induction_memory", 5),
    "pad_token_id": ("pad_token_id", 0),
    "bos_token_id": ("bos_token_id", 2),
    "eos_token_id": ("eos_token_id", 3),
    "tie_word_embeddings": ("tie_word_embeddings", True),
}

# reference tensor name -> babblelm tensor name ({i}: layer, {s}: convolution stage)
NAMES = NameMap([
    ("model.embed_tokens.weight", "model.embed_tokens.weight"),
    ("model.pos", "model.embed_positions.weight"),  # (1, positions, d) -> (positions, d)
    ("model.layers.{i}.conv.norm.weight", "model.layers.{i}.conv_norm.weight"),
    ("model.layers.{i}.conv.kproj.{s}.weight", "model.layers.{i}.conv.kernel_proj.{s}.weight"),
    ("model.layers.{i}.conv.kproj.{s}.bias", "model.layers.{i}.conv.kernel_proj.{s}.bias"),
    ("model.layers.{i}.conv.gates.{s}.weight", "model.layers.{i}.conv.gate_proj.{s}.weight"),
    ("model.layers.{i}.conv.o.weight", "model.layers.{i}.conv.out_proj.weight"),
    ("model.layers.{i}.mixer.norm.weight", "model.layers.{i}.induction_norm.weight"),
    ("model.layers.{i}.mixer.q.weight", "model.layers.{i}.induction.q_proj.weight"),
    ("model.layers.{i}.mixer.k.weight", "model.layers.{i}.induction.k_proj.weight"),
    ("model.layers.{i}.mixer.v.weight", "model.layers.{i}.induction.v_proj.weight"),
    ("model.layers.{i}.mixer.o.weight", "model.layers.{i}.induction.o_proj.weight"),
    ("model.layers.{i}.mixer.sink_k", "model.layers.{i}.induction.sink_key"),
    ("model.layers.{i}.mixer.sink_v", "model.layers.{i}.induction.sink_value"),
    ("model.layers.{i}.ffn.norm.weight", "model.layers.{i}.mlp_norm.weight"),
    ("model.layers.{i}.ffn.g.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    ("model.layers.{i}.ffn.u.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("model.layers.{i}.ffn.dn.weight", "model.layers.{i}.mlp.down_proj.weight"),
    ("model.norm.weight", "model.norm.weight"),
    ("model.norm.bias", "model.norm.bias"),
    ("lm_head.weight", "lm_head.weight"),
], squeezed=("model.embed_positions.weight",))


def babblelm_config(source: dict) -> dict:
    """The `induction` config arguments of a reference config.json."""
    return {ours: source.get(theirs, default) for theirs, (ours, default) in CONFIG_KEYS.items()}


IMPORTER = Importer(
    model_type="induction_lm", arch="induction", config=babblelm_config, names=NAMES,
    describe="Conv-Routed Induction LM reference (github joshua-taylor/conv-induction-babylm, modeling_induction.py)")
