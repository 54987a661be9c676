"""Conv-Routed Induction LM: attention split into a local dynamic convolution and an exact-match
induction mixer, so no layer ever builds a T x T matrix.

Each layer has three pre-norm residual sub-blocks:

1. Dynamic Conv: three stacked causal depthwise convolutions (kernel 3, dilations 1, 2, 4 by
   default, so about 15 tokens of reach) whose softmax-normalised kernels are predicted per
   position and per channel group from the token's own state; the result is gated.
2. Induction Mixer: for every position, the last M earlier positions holding the same token id
   (found once per forward by a stable sort, `previous_occurrences`); multi-head scores between
   the present (query) and each occurrence (key) pick, through a softmax over M candidates plus a
   learnable per-head sink, a mix of the states of the tokens that FOLLOWED those occurrences.
3. SwiGLU feed-forward.

Positions are learned absolute embeddings counted from the attention mask, and padding positions
are zeroed after every sub-block, so left- and right-padded batches agree on the real tokens.
Decoding keeps, in a `BabbleCache`, per sequence the table of last occurrences of every token id and
per layer the convolution tails and the mixer's keys/values, so the prefix is never recomputed.
The learned position table bounds the text length at `max_position_embeddings`.

Hugging Face single-file style: export copies this file with `layers.py`, so it imports only torch,
transformers and `.layers`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin

from .layers import (BabbleConfig, BabbleDecoder, BabblePreTrainedModel, CausalLMHead, RMSNorm, SwiGLU, check_positive,
                     init, position_ids_from_mask, scale_residual_init)

DEFAULT_DILATIONS = (1, 2, 4)


class BabbleInductionConfig(BabbleConfig):
    """Shape of the Conv-Routed Induction LM. `conv_dilations` None means (1, 2, 4). Positions are a
    learned table, so `max_position_embeddings` is a hard limit on the text length."""

    model_type = "babble_induction"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(self, vocab_size: int = 8000, hidden_size: int = 384, num_hidden_layers: int = 3,
                 num_attention_heads: int = 4, intermediate_size: int = 1536, induction_memory: int = 5,
                 conv_kernel_size: int = 3, conv_dilations: list[int] | None = None, conv_groups: int = 16,
                 max_position_embeddings: int = 512, rms_norm_eps: float = 1e-5, initializer_range: float = 0.02,
                 tie_word_embeddings: bool = True, **kwargs):
        super().__init__(locals(), **kwargs)

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(self.conv_dilations or DEFAULT_DILATIONS)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def check_settings(self):
        super().check_settings()
        check_positive(self, "num_attention_heads", "induction_memory", "conv_kernel_size", "conv_groups",
                       "max_position_embeddings")
        for name in ("num_attention_heads", "conv_groups"):
            if self.hidden_size % getattr(self, name):
                raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by {name} ({getattr(self, name)})")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"conv_dilations must be a non-empty list of integers >= 1, got {self.conv_dilations}")


def previous_occurrences(keys: torch.Tensor, memory: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each position, the `memory` nearest earlier positions with the same key, nearest first.

    keys: (batch, seq) int64, -1 at padding (padding never matches anything real).
    Returns (candidates (batch, seq, memory) with -1 where there is none, the sort order, the
    sorted keys). A stable sort groups equal keys in position order, so the previous j-th
    occurrence of the token at sorted slot i sits at slot i - j whenever the key there is equal:
    O(T log T) time and O(T * memory) memory.
    """
    sorted_keys, order = torch.sort(keys, dim=-1, stable=True)
    window = memory + 1  # the candidates and the position itself
    pos_win = F.pad(order, (memory, 0), value=-1).unfold(-1, window, 1)  # (batch, seq, memory + 1)
    key_win = F.pad(sorted_keys, (memory, 0), value=-2).unfold(-1, window, 1)
    same = (key_win[..., :memory] == sorted_keys[..., None]) & (sorted_keys[..., None] >= 0)
    cand_sorted = torch.where(same, pos_win[..., :memory], -1).flip(-1)
    candidates = torch.empty_like(cand_sorted).scatter_(1, order[..., None].expand_as(cand_sorted), cand_sorted)
    return candidates, order, sorted_keys


def cached_candidates(cache, keys: torch.Tensor, memory: int, vocab_size: int) -> torch.Tensor:
    """Absolute candidate positions for new tokens `keys` (batch, seq) after `cache.seen_tokens`
    earlier ones. `cache.shared["table"]` (batch, vocab, memory) holds the last `memory` positions of
    every token id seen so far (-1 for none) and is updated here."""
    batch, seq = keys.shape
    past = cache.seen_tokens
    table = cache.shared.get("table")
    if table is None:
        table = keys.new_full((batch, vocab_size, memory), -1)
    local, order, sorted_keys = previous_occurrences(keys, memory)
    fresh = torch.where(local >= 0, local + past, -1)  # occurrences inside the new chunk
    older = table.gather(1, keys.clamp_min(0)[..., None].expand(-1, -1, memory))
    older = torch.where(keys[..., None] >= 0, older, -1)
    n_fresh = (local >= 0).sum(-1, keepdim=True)  # fresh ones are nearer: they come first
    j = torch.arange(memory, device=keys.device)
    merged = torch.cat([fresh, older], -1).gather(-1, torch.where(j < n_fresh, j, memory + j - n_fresh))
    # the last occurrence of each id in the chunk becomes that id's table row
    last = (sorted_keys != F.pad(sorted_keys[:, 1:], (0, 1), value=-2)) & (sorted_keys >= 0)
    rows, slots = last.nonzero(as_tuple=True)
    positions = order[rows, slots]
    new_rows = torch.cat([(positions + past)[:, None], merged[rows, positions, : memory - 1]], -1)
    table[rows, sorted_keys[rows, slots]] = new_rows
    cache.shared["table"] = table
    return merged


class DynamicConv(nn.Module):
    """Gated stack of causal depthwise dilated convolutions with per-position softmax kernels."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        dim, self.groups, self.kernel = config.hidden_size, config.conv_groups, config.conv_kernel_size
        self.dilations = config.dilations
        self.in_proj = nn.Linear(dim, dim, bias=False)
        self.gate_proj = nn.Linear(dim, dim, bias=False)
        self.kernel_proj = nn.Linear(dim, len(self.dilations) * self.groups * self.kernel, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, keep, tails):
        """x (batch, seq, dim); keep (batch, seq, 1) 0/1 or None; tails: per stage the last
        (kernel - 1) * dilation inputs before x (None: zeros). Returns (output, new tails)."""
        batch, seq, dim = x.shape
        kernels = self.kernel_proj(x).view(batch, seq, len(self.dilations), self.groups, self.kernel).softmax(-1)
        u = self.in_proj(x)
        new_tails = []
        for stage, dilation in enumerate(self.dilations):
            if keep is not None:
                u = u * keep
            span = (self.kernel - 1) * dilation
            past = u.new_zeros(batch, span, dim) if tails is None else tails[stage]
            padded = torch.cat([past, u], 1)
            new_tails.append(padded[:, padded.shape[1] - span :])
            grouped = padded.view(batch, span + seq, self.groups, dim // self.groups)
            w = kernels[:, :, stage, :, :, None]  # (batch, seq, groups, kernel, 1)
            u = sum(w[:, :, :, k] * grouped[:, span - k * dilation : span - k * dilation + seq] for k in range(self.kernel))
            u = u.reshape(batch, seq, dim)
        return self.out_proj(u * F.silu(self.gate_proj(x))), new_tails


class InductionMixer(nn.Module):
    """Soft choice among the previous occurrences of the current token (or a per-head sink);
    copies the states that followed the chosen occurrences."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        dim, self.heads, self.head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.sink = nn.Parameter(torch.zeros(self.heads))

    def forward(self, x, candidates, past_kv):
        """x (batch, seq, dim); candidates (batch, seq, M) absolute positions or -1; past_kv: keys
        and values of earlier positions (batch, past, dim) or None. Returns (output, (keys, values))."""
        batch, seq, dim = x.shape
        memory = candidates.shape[-1]
        q = self.q_proj(x).view(batch, seq, self.heads, self.head_dim)
        k, v = self.k_proj(x), self.v_proj(x)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], 1), torch.cat([past_kv[1], v], 1)
        valid = candidates >= 0
        where = candidates.clamp_min(0)

        def pick(states, index):  # (batch, total, dim) at (batch, seq, M) -> (batch, seq, M, heads, head_dim)
            flat = index.reshape(batch, seq * memory, 1).expand(-1, -1, dim)
            return states.gather(1, flat).view(batch, seq, memory, self.heads, self.head_dim)

        keys = pick(k, where)
        values = pick(v, (where + 1).clamp_max(v.shape[1] - 1))  # the token that followed each occurrence
        scores = torch.einsum("bthd,btmhd->bthm", q, keys) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~valid[:, :, None, :], float("-inf"))
        sink = self.sink.to(scores.dtype).view(1, 1, self.heads, 1).expand(batch, seq, -1, -1)
        weights = torch.cat([scores, sink], -1).float().softmax(-1)[..., :memory].to(values.dtype)
        out = torch.einsum("bthm,btmhd->bthd", weights, values).reshape(batch, seq, dim)
        return self.o_proj(out), (k, v)


class InductionLayer(nn.Module):
    """x + conv(norm(x)), + induction(norm(x)), + ffn(norm(x)); padding zeroed after each."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        self.conv_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.conv = DynamicConv(config)
        self.induction_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.induction = InductionMixer(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        scale_residual_init(config, self.conv.out_proj, self.induction.o_proj, self.mlp.down_proj, branches=3)

    def forward(self, hidden_states, context, layer_cache=None):
        """context: (candidate positions, keep mask or None); `layer_cache` (conv tails, keys and
        values of earlier positions) is read and updated in place when given."""
        candidates, keep = context

        def masked(h):
            return h if keep is None else h * keep

        cache = layer_cache if layer_cache is not None else {}
        conv_out, tails = self.conv(self.conv_norm(hidden_states), keep, cache.get("conv"))
        h = masked(hidden_states + conv_out)
        past_kv = (cache["key"], cache["value"]) if "key" in cache else None
        mixed, (k, v) = self.induction(self.induction_norm(h), candidates, past_kv)
        h = masked(h + mixed)
        if layer_cache is not None:
            layer_cache["conv"], layer_cache["key"], layer_cache["value"] = tuple(tails), k, v
        return masked(h + self.mlp(self.mlp_norm(h)))


class BabbleInductionPreTrainedModel(BabblePreTrainedModel):
    config_class = BabbleInductionConfig
    _no_split_modules = ["InductionLayer"]

    def _init_module(self, module):
        """Sinks start at 0."""
        if isinstance(module, InductionMixer):
            init.zeros_(module.sink)


class BabbleInductionModel(BabbleDecoder, BabbleInductionPreTrainedModel):
    """Token + learned position embeddings, the layers and the final norm; returns hidden states."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(InductionLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """Token + position embeddings; context: each new position's candidate earlier positions and
        which positions are real (None: no padding)."""
        if input_ids is None:
            raise ValueError("the induction model needs input_ids: its occurrence index matches token ids")
        seq = input_ids.shape[1]
        limit = self.config.max_position_embeddings
        if past + seq > limit:
            raise ValueError(f"sequence of {past + seq} tokens (cache included) exceeds max_position_embeddings="
                             f"{limit}: this model's positions are a learned table of {limit} entries")
        if attention_mask is None:
            positions, keep, keys = torch.arange(past, past + seq, device=input_ids.device)[None], None, input_ids
        else:
            positions = position_ids_from_mask(attention_mask, seq)
            real = attention_mask[:, past:].bool()
            keep = None if bool(real.all()) else real[..., None].to(self.embed_tokens.weight.dtype)
            keys = torch.where(real, input_ids, -1)
        memory = self.config.induction_memory
        if cache is not None:
            candidates = cached_candidates(cache, keys, memory, self.config.vocab_size)
        else:
            candidates = previous_occurrences(keys, memory)[0]
        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)
        if keep is not None:
            hidden = hidden * keep
        return hidden, (candidates, keep)


class BabbleInductionForCausalLM(CausalLMHead, BabbleInductionPreTrainedModel, GenerationMixin):
    """The model plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BabbleInductionModel
