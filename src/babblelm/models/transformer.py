"""A Llama/Qwen-style decoder: pre-norm RMSNorm, rotary positions, grouped-query attention
through `scaled_dot_product_attention`, SwiGLU feed-forward, optional tied embeddings.

Hugging Face single-file style: the config, the bare decoder and the causal-LM head, with a
KV cache (`transformers.DynamicCache`) so `model.generate(...)` works. Export copies this file
and `layers.py` into the model folder, so it imports only torch, transformers and `.layers`.
"""

import math

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast

from .layers import CausalLMHead, RMSNorm, RotaryEmbedding, SwiGLU, apply_rotary, causal_mask, position_ids_from_mask


@strict
class BabbleTransformerConfig(PreTrainedConfig):
    """Shape of the decoder. `num_key_value_heads` None means one KV head per query head."""

    model_type = "babble_transformer"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 16000
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 6
    num_key_value_heads: int | None = None
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    def validate_architecture(self):
        """Called by `@strict` after every construction; raises ValueError naming the field."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.head_dim % 2:
            raise ValueError(f"hidden_size / num_attention_heads must be even for rotary embeddings, got {self.head_dim}")
        if self.num_key_value_heads is not None and (
            self.num_key_value_heads < 1 or self.num_attention_heads % self.num_key_value_heads
        ):
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        if self.rope_theta <= 0 or self.rms_norm_eps <= 0 or self.initializer_range <= 0:
            raise ValueError("rope_theta, rms_norm_eps and initializer_range must be > 0")


class BabbleAttention(nn.Module):
    """Causal self-attention with rotary positions; K/V heads are shared by groups of Q heads."""

    def __init__(self, config: BabbleTransformerConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x, rope, mask, past_key_values: Cache | None) -> torch.Tensor:
        """x (batch, seq, hidden); mask None means plain causal attention (no padding, no cache)."""
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=self.kv_heads != self.num_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))


class BabbleDecoderLayer(GradientCheckpointingLayer):
    """x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: BabbleTransformerConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = BabbleAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        residual_std = config.initializer_range / math.sqrt(2 * config.num_hidden_layers)
        for proj in (self.self_attn.o_proj, self.mlp.down_proj):
            proj.init_std = residual_std  # read by _init_weights: outputs added to the residual stream

    def forward(self, hidden_states, rope=None, mask=None, past_key_values=None) -> torch.Tensor:
        h = hidden_states + self.self_attn(self.input_layernorm(hidden_states), rope, mask, past_key_values)
        return h + self.mlp(self.post_attention_layernorm(h))


class BabbleTransformerPreTrainedModel(PreTrainedModel):
    config: BabbleTransformerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BabbleDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, initializer_range), or a module's own `init_std` (the residual output
        projections); norms start at 1; rotary tables are recomputed.

        Called per module, leaves first; modules without parameters of their own are skipped."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=getattr(module, "init_std", self.config.initializer_range))
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, RotaryEmbedding):
            cos, sin = module.tables()
            init.copy_(module.cos, cos)
            init.copy_(module.sin, sin)


class BabbleTransformerModel(BabbleTransformerPreTrainedModel):
    """Embeddings, the decoder layers and the final norm; returns hidden states."""

    def __init__(self, config: BabbleTransformerConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(BabbleDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """`attention_mask` is a 0/1 (batch, past + new) padding mask; other kwargs are ignored."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if use_cache is None:
            use_cache = not self.training
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        mask, default_positions = self._mask_and_positions(attention_mask, hidden.shape[0], hidden.shape[1], past_len)
        rope = self.rotary(default_positions if position_ids is None else position_ids)

        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        all_hidden = []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden = layer(hidden, rope=rope, mask=mask, past_key_values=past_key_values)
        hidden = self.norm(hidden)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            past_key_values=past_key_values if use_cache else None,
            hidden_states=(*all_hidden, hidden) if output_hidden_states else None,
        )

    def _mask_and_positions(self, attention_mask, batch: int, seq: int, past_len: int):
        """(SDPA mask or None for the is_causal fast path, position ids of the new tokens)."""
        total = past_len + seq
        if total > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {total} tokens (cache included) exceeds "
                             f"max_position_embeddings={self.config.max_position_embeddings}")
        device = self.embed_tokens.weight.device
        if attention_mask is None:
            positions = torch.arange(past_len, total, device=device)[None]
        else:
            if tuple(attention_mask.shape) != (batch, total):
                raise ValueError(f"attention_mask must be a 0/1 tensor of shape (batch, past + new tokens) = "
                                 f"{(batch, total)}, got shape {tuple(attention_mask.shape)}")
            positions = position_ids_from_mask(attention_mask, seq)
            if bool(attention_mask.all()):
                attention_mask = None  # no padding
        if attention_mask is None and past_len == 0:
            return None, positions
        return causal_mask(attention_mask, seq, past_len, device), positions


class BabbleTransformerForCausalLM(CausalLMHead, BabbleTransformerPreTrainedModel, GenerationMixin):
    """The decoder plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BabbleTransformerModel
