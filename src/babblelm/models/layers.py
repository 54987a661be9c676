"""Building blocks shared by the babblelm architectures.

RMSNorm, the SwiGLU feed-forward block, rotary position embeddings (a cos/sin table plus the
function that applies it), the two helpers that turn a 2-D padding mask into position ids
and into a boolean attention mask, and the vocabulary head with its loss that every
`...ForCausalLM` class shares.

Export copies this file next to each architecture module, so it imports only torch and transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SwiGLU(nn.Module):
    """Gated feed-forward block: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding: cos/sin tables for positions 0..max_positions-1.

    The tables are non-persistent buffers (never saved); `tables()` recomputes them, which
    the model's weight initialisation uses after loading on the meta device.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        self.head_dim, self.max_positions, self.theta = head_dim, max_positions, theta
        cos, sin = self.tables()
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (max_positions, head_dim), in float32 on the CPU."""
        inv_freq = self.theta ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim)
        angles = torch.outer(torch.arange(self.max_positions, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().float(), angles.sin().float()

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Position ids (batch, seq) -> cos, sin of shape (batch, 1, seq, head_dim)."""
        return self.cos[position_ids].unsqueeze(1), self.sin[position_ids].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) features; pairs are (i, i + head_dim/2)."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def position_ids_from_mask(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """Positions of the last `q_len` columns of a (batch, kv_len) 0/1 padding mask.

    Each real token's position counts the real tokens before it, so left padding does not
    shift positions; padding columns get position 0 (or repeat the last real one).
    """
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    return positions[:, -q_len:]


def causal_mask(attention_mask: torch.Tensor | None, q_len: int, past_len: int, device: torch.device) -> torch.Tensor:
    """Boolean SDPA mask (batch or 1, 1, q_len, past_len + q_len); True means "may attend".

    Query i sits at key index past_len + i and sees keys up to there that the padding mask
    marks real. Every query may also see itself, so rows of padding are never empty (an empty
    row would turn into NaN and leak through the value vectors of later layers).
    """
    kv_len = past_len + q_len
    query_index = torch.arange(past_len, kv_len, device=device).view(1, 1, q_len, 1)
    key_index = torch.arange(kv_len, device=device).view(1, 1, 1, kv_len)
    allowed = key_index <= query_index
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].bool()
    return allowed | (key_index == query_index)


class CausalLMHead:
    """What every `...ForCausalLM` class shares (mixed in before `PreTrainedModel`): `self.model`, a
    `decoder_class` built from the config, returns hidden states; `self.lm_head` maps them to the
    vocabulary (tied to the input embeddings when the config says so)."""

    decoder_class: type  # set by each architecture
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = self.decoder_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep: int = 0,
                output_hidden_states=None, **kwargs) -> CausalLMOutputWithPast:
        """Logits for every position (or the last `logits_to_keep`); with `labels`, the mean
        cross-entropy of predicting labels[:, 1:] from positions [:, :-1] (-100 is ignored).
        Arguments a model does not use (position_ids for a model without positions, token_type_ids,
        cache_position, ...) are ignored."""
        if labels is not None and logits_to_keep:
            raise ValueError("labels need logits for every position; leave logits_to_keep at 0")
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                         output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(logits.device), ignore_index=-100
            )
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states
        )
