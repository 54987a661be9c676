"""GPT-2: the decoder of the official BabyLM baselines. Pre-LayerNorm blocks with biases, causal
multi-head self-attention through one fused query/key/value projection, a GELU (tanh) feed-forward,
learned absolute positions and a tied output head; dropout as GPT-2 places it (training only).

Each block: h = x + attn(ln_1(x)), then h + mlp(ln_2(h)); mlp(x) = c_proj(gelu_tanh(c_fc(x))). Positions
count the real tokens of the attention mask, so left padding does not shift them; the learned table
bounds the text at `max_position_embeddings`. Decoding keeps every layer's keys and values in a
`BabbleCache`.

The math, the settings and the parameter names are those of transformers' `GPT2LMHeadModel`, which
is how `babble export` ships it (models/native.py): babblelm's `model.embed_tokens`,
`model.embed_positions`, `model.layers.N`, `model.norm` are GPT-2's `transformer.wte`, `transformer.wpe`,
`transformer.h.N`, `transformer.ln_f`, and the weights of `c_attn`, `c_proj` and `c_fc` are stored
transposed there (GPT-2's Conv1D keeps (in, out), nn.Linear (out, in)). Export copies this file with
`layers.py` when it ships remote code, so it imports only torch, transformers and `.layers`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin

from .layers import (BabbleDecoder, BabblePreTrainedModel, CausalLMHead, MultiHeadConfig, attention_inputs,
                     check_positive, scale_residual_init, total_length)


class BabbleGPT2Config(MultiHeadConfig):
    """Shape of GPT-2 (the defaults: the BabyBabelLM / TAAM small baseline, 6 x 512, 8 heads, context
    512). The dropout rates are GPT-2's `embd_pdrop`, `attn_pdrop` and `resid_pdrop`."""

    model_type = "babble_gpt2"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(self, vocab_size: int = 32000, hidden_size: int = 512, num_hidden_layers: int = 6,
                 num_attention_heads: int = 8, intermediate_size: int = 2048, max_position_embeddings: int = 512,
                 layer_norm_epsilon: float = 1e-5, embd_pdrop: float = 0.1, attn_pdrop: float = 0.1,
                 resid_pdrop: float = 0.1, initializer_range: float = 0.02, tie_word_embeddings: bool = True, **kwargs):
        super().__init__(locals(), **kwargs)

    def check_settings(self):
        super().check_settings()
        check_positive(self, "max_position_embeddings")
        if self.layer_norm_epsilon <= 0:
            raise ValueError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention; `c_attn` yields queries, keys and values side by side."""

    def __init__(self, config: BabbleGPT2Config):
        super().__init__()
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, mask, layer_cache: dict | None) -> torch.Tensor:
        """x (batch, seq, hidden); mask None means plain causal attention (no padding, no cache)."""
        batch, seq, _ = x.shape
        q, k, v = self.c_attn(x).view(batch, seq, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if layer_cache is not None:
            k, v = layer_cache.extend("key", k, 2), layer_cache.extend("value", v, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                             dropout_p=self.attn_pdrop if self.training else 0.0)
        return self.resid_dropout(self.c_proj(out.transpose(1, 2).reshape(batch, seq, -1)))


class GPT2MLP(nn.Module):
    """c_proj(gelu_tanh(c_fc(x))), with biases."""

    def __init__(self, config: BabbleGPT2Config):
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, config.intermediate_size)
        self.c_proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class GPT2Block(nn.Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, config: BabbleGPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)
        scale_residual_init(config, self.attn.c_proj, self.mlp.c_proj)

    def forward(self, hidden_states, context, layer_cache=None) -> torch.Tensor:
        h = hidden_states + self.attn(self.ln_1(hidden_states), context, layer_cache)
        return h + self.mlp(self.ln_2(h))


class BabbleGPT2PreTrainedModel(BabblePreTrainedModel):
    config_class = BabbleGPT2Config
    _no_split_modules = ["GPT2Block"]


class BabbleGPT2Model(BabbleDecoder, BabbleGPT2PreTrainedModel):
    """Token + learned position embeddings, the blocks and the final LayerNorm; returns hidden states."""

    def __init__(self, config: BabbleGPT2Config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.layers = nn.ModuleList(GPT2Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """Token + position embeddings; context: the SDPA mask (None on the is_causal fast path)."""
        hidden, position_ids, length, mask = attention_inputs(self.embed_tokens, input_ids, inputs_embeds,
                                                              attention_mask, position_ids, past)
        limit = self.config.max_position_embeddings
        if length > limit and int(position_ids.max()) >= limit:
            raise ValueError(f"position {int(position_ids.max())} (sequence of {total_length(past, hidden.shape[1])} "
                             f"tokens, cache included) exceeds max_position_embeddings={limit}: this model's positions "
                             f"are a learned table of {limit} entries")
        return self.drop(hidden + self.embed_positions(position_ids)), mask


class BabbleGPT2ForCausalLM(CausalLMHead, BabbleGPT2PreTrainedModel, GenerationMixin):
    """The decoder plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BabbleGPT2Model
