"""A Llama/Qwen-style decoder: pre-norm RMSNorm, rotary positions, grouped-query attention
through `scaled_dot_product_attention`, SwiGLU feed-forward, optional tied embeddings.

Hugging Face single-file style: the config, the bare decoder and the causal-LM head; decoding keeps
the keys and values of every layer in a `BabbleCache`. Its weights and settings map one to one onto
transformers' `LlamaForCausalLM`, which is how `babble export` ships it. Export copies this file
with `layers.py` when it ships remote code, so it imports only torch, transformers and `.layers`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin

from .layers import (BabbleDecoder, BabblePreTrainedModel, CausalLMHead, MultiHeadConfig, RMSNorm, RotaryEmbedding,
                     SwiGLU, apply_rotary, attention_inputs, check_positive, scale_residual_init)


class BabbleTransformerConfig(MultiHeadConfig):
    """Shape of the decoder. `num_key_value_heads` None means one KV head per query head.
    `max_position_embeddings` is the trained length; longer texts extend the rotary positions."""

    model_type = "babble_transformer"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    rotary_heads = True

    def __init__(self, vocab_size: int = 16000, hidden_size: int = 384, num_hidden_layers: int = 6,
                 num_attention_heads: int = 6, num_key_value_heads: int | None = None, intermediate_size: int = 1536,
                 max_position_embeddings: int = 512, rope_theta: float = 10000.0, rms_norm_eps: float = 1e-5,
                 initializer_range: float = 0.02, tie_word_embeddings: bool = False, **kwargs):
        super().__init__(locals(), **kwargs)

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    def check_settings(self):
        super().check_settings()
        check_positive(self, "max_position_embeddings")
        if self.num_key_value_heads is not None and (
            self.num_key_value_heads < 1 or self.num_attention_heads % self.num_key_value_heads
        ):
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"num_key_value_heads ({self.num_key_value_heads})")


class BabbleAttention(nn.Module):
    """Causal self-attention with rotary positions; K/V heads are shared by groups of Q heads."""

    def __init__(self, config: BabbleTransformerConfig):
        super().__init__()
        self.num_heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x, rope, mask, layer_cache: dict | None) -> torch.Tensor:
        """x (batch, seq, hidden); mask None means plain causal attention (no padding, no cache)."""
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if layer_cache is not None:
            k, v = layer_cache.extend("key", k, 2), layer_cache.extend("value", v, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=self.kv_heads != self.num_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))


class BabbleDecoderLayer(nn.Module):
    """x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: BabbleTransformerConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = BabbleAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        scale_residual_init(config, self.self_attn.o_proj, self.mlp.down_proj)

    def forward(self, hidden_states, context, layer_cache=None) -> torch.Tensor:
        rope, mask = context
        h = hidden_states + self.self_attn(self.input_layernorm(hidden_states), rope, mask, layer_cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class BabbleTransformerPreTrainedModel(BabblePreTrainedModel):
    config_class = BabbleTransformerConfig
    _no_split_modules = ["BabbleDecoderLayer"]


class BabbleTransformerModel(BabbleDecoder, BabbleTransformerPreTrainedModel):
    """Embeddings, the decoder layers and the final norm; returns hidden states."""

    def __init__(self, config: BabbleTransformerConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(BabbleDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta)
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """Token embeddings; context: rotary tables and the SDPA mask (None on the is_causal fast path)."""
        hidden, position_ids, length, mask = attention_inputs(self.embed_tokens, input_ids, inputs_embeds,
                                                              attention_mask, position_ids, past)
        return hidden, (self.rotary(position_ids, length), mask)


class BabbleTransformerForCausalLM(CausalLMHead, BabbleTransformerPreTrainedModel, GenerationMixin):
    """The decoder plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BabbleTransformerModel
