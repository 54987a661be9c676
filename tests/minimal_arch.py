"""A minimal architecture, added the documented way (docs/architectures.md, "Adding an architecture"),
to prove that one module plus one registry line is all an architecture needs.

Each layer adds a projection of the running mean of its normalised inputs over the real positions
so far (a causal average: constant-size state, no positions), then a SwiGLU block. The test suite
drops this file next to babblelm's `layers.py` as `babblelm.models.minimal` and runs the whole
contract (tests/contract.py) on it.
"""

import torch
from torch import nn
from transformers import GenerationMixin

from .layers import BabbleConfig, BabbleDecoder, BabblePreTrainedModel, CausalLMHead, RMSNorm, SwiGLU


class MinimalConfig(BabbleConfig):
    model_type = "babble_minimal"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(self, vocab_size: int = 1000, hidden_size: int = 64, num_hidden_layers: int = 2,
                 intermediate_size: int = 128, rms_norm_eps: float = 1e-5, initializer_range: float = 0.02,
                 tie_word_embeddings: bool = True, **kwargs):
        super().__init__(locals(), **kwargs)


class MeanLayer(nn.Module):
    def __init__(self, config: MinimalConfig):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states, keep, layer_cache=None):
        u = self.norm(hidden_states) * keep
        sums, counts = u.cumsum(1), keep.cumsum(1)
        if layer_cache is not None and "sum" in layer_cache:
            sums, counts = sums + layer_cache["sum"][:, None], counts + layer_cache["count"][:, None]
        if layer_cache is not None:
            layer_cache["sum"], layer_cache["count"] = sums[:, -1], counts[:, -1]
        h = hidden_states + self.proj(sums / counts.clamp_min(1))
        return h + self.mlp(self.mlp_norm(h))


class MinimalPreTrainedModel(BabblePreTrainedModel):
    config_class = MinimalConfig


class MinimalModel(BabbleDecoder, MinimalPreTrainedModel):
    def __init__(self, config: MinimalConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MeanLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        keep = (attention_mask[:, past:, None].to(hidden.dtype) if attention_mask is not None
                else torch.ones_like(hidden[..., :1]))
        return hidden, keep


class MinimalForCausalLM(CausalLMHead, MinimalPreTrainedModel, GenerationMixin):
    decoder_class = MinimalModel
