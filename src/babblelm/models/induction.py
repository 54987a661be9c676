"""Conv-Routed Induction LM: attention split into a local dynamic convolution and an exact-match
induction mixer, so no layer ever builds a T x T matrix.

This is the function of the public reference implementation (github joshua-taylor/conv-induction-babylm,
`modeling_induction.py`): the same sub-layers, parameters and initialisation, the same logits on any
unpadded input; `babble import` converts its checkpoints (the tensor-name map is in
importers/induction.py, docs/architectures.md). Each layer has three pre-norm residual sub-blocks:

1. Dynamic Conv: from z = RMSNorm(h), a stack of causal depthwise dilated convolutions (kernel 3,
   dilations 1, 2, 4 by default, so about 15 tokens of reach). Each stage predicts its softmax
   kernels per position and channel group from the running state, convolves the running state and
   adds the result back through a sigmoid gate; one output projection follows the last stage.
2. Induction Mixer: for every position, the last M earlier positions holding the same token id
   (found once per forward by a stable sort, `previous_occurrences`). Multi-head scores between the
   present (query) and each occurrence (key) choose, through a softmax over the M candidates and a
   learned sink key per head, a mix of the states of the tokens that FOLLOWED those occurrences
   (usable when that token lies strictly before the present) and the sink's learned value.
3. SwiGLU feed-forward.

After the last layer a LayerNorm, then the (tied) vocabulary head.

Beyond the reference, and without changing its outputs on unpadded text: positions are counted from
the attention mask and padding positions are zeroed after every sub-block, so left- and right-padded
batches agree with each sequence alone; decoding keeps, in a `BabbleCache`, per sequence the table of
last occurrences of every token id and per layer each convolution stage's tail and the mixer's keys and
values, so the prefix is never recomputed; a text longer than the learned position table
(`max_position_embeddings`) is an error rather than silently unpositioned.

Hugging Face single-file style: export copies this file with `layers.py`, so it imports only torch,
transformers and `.layers`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin

from .layers import (BabbleDecoder, BabblePreTrainedModel, CausalLMHead, MultiHeadConfig, RMSNorm, SwiGLU,
                     check_divides, check_positive, init, new_positions, position_ids_from_mask, total_length)

DEFAULT_DILATIONS = (1, 2, 4)


class BabbleInductionConfig(MultiHeadConfig):
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

    def check_settings(self):
        super().check_settings()
        check_positive(self, "induction_memory", "conv_kernel_size", "conv_groups", "max_position_embeddings")
        check_divides(self, "conv_groups")
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


def cached_candidates(cache, keys: torch.Tensor, memory: int, vocab_size: int, past) -> torch.Tensor:
    """Absolute candidate positions for new tokens `keys` (batch, seq) after `past` earlier ones (an
    int, or one count per row). `cache.shared["table"]` (batch, vocab, memory) holds the last `memory`
    positions of every token id seen so far (-1 for none) and is updated here."""
    batch, seq = keys.shape
    offset = past if isinstance(past, int) else past[:, None, None]
    table = cache.shared.get("table")
    if table is None:
        table = keys.new_full((batch, vocab_size, memory), -1)
    local, order, sorted_keys = previous_occurrences(keys, memory)
    fresh = torch.where(local >= 0, local + offset, -1)  # occurrences inside the new chunk
    older = table.gather(1, keys.clamp_min(0)[..., None].expand(-1, -1, memory))
    older = torch.where(keys[..., None] >= 0, older, -1)
    n_fresh = (local >= 0).sum(-1, keepdim=True)  # fresh ones are nearer: they come first
    j = torch.arange(memory, device=keys.device)
    merged = torch.cat([fresh, older], -1).gather(-1, torch.where(j < n_fresh, j, memory + j - n_fresh))
    # the last occurrence of each id in the chunk becomes that id's table row
    last = (sorted_keys != F.pad(sorted_keys[:, 1:], (0, 1), value=-2)) & (sorted_keys >= 0)
    rows, slots = last.nonzero(as_tuple=True)
    positions = order[rows, slots]
    absolute = positions + (past if isinstance(past, int) else past[rows])
    new_rows = torch.cat([absolute[:, None], merged[rows, positions, : memory - 1]], -1)
    table[rows, sorted_keys[rows, slots]] = new_rows
    cache.shared["table"] = table
    return merged


class DynamicConv(nn.Module):
    """Stages of causal depthwise dilated convolution over a running state, each with per-position
    softmax kernels predicted from that state and a gated residual; then an output projection."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        dim, self.groups, self.kernel = config.hidden_size, config.conv_groups, config.conv_kernel_size
        self.dilations = config.dilations
        self.kernel_proj = nn.ModuleList(nn.Linear(dim, self.groups * self.kernel) for _ in self.dilations)
        self.gate_proj = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in self.dilations)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, z, keep, tails):
        """z (batch, seq, dim) the normed input; keep (batch, seq, 1) 0/1 or None; tails: per stage
        the last (kernel - 1) * dilation running states before z (None: zeros). Returns (output,
        new tails)."""
        batch, seq, dim = z.shape
        state, new_tails = z, []
        for stage, dilation in enumerate(self.dilations):
            if keep is not None:
                state = state * keep
            span = (self.kernel - 1) * dilation
            past = state.new_zeros(batch, span, dim) if tails is None else tails[stage]
            padded = torch.cat([past, state], 1)
            new_tails.append(padded[:, padded.shape[1] - span :])
            weights = self.kernel_proj[stage](state).view(batch, seq, self.groups, self.kernel, 1).softmax(-2)
            grouped = padded.view(batch, span + seq, self.groups, dim // self.groups)
            # tap j reads the state (kernel - 1 - j) * dilation positions back; the last tap is the present
            starts = [span - (self.kernel - 1 - j) * dilation for j in range(self.kernel)]
            out = sum(weights[:, :, :, j] * grouped[:, start : start + seq] for j, start in enumerate(starts))
            out = out.reshape(batch, seq, dim)
            state = state + torch.sigmoid(self.gate_proj[stage](out)) * out
        return self.out_proj(state), new_tails


class InductionMixer(nn.Module):
    """Soft choice among the previous occurrences of the current token and a learned sink; reads the
    states that followed the chosen occurrences (and the sink's value)."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__()
        dim, self.heads, self.head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.sink_key = nn.Parameter(torch.zeros(self.heads, self.head_dim))
        self.sink_value = nn.Parameter(torch.zeros(self.heads, self.head_dim))

    def forward(self, z, candidates, present, layer_cache):
        """z (batch, seq, dim) the normed input; candidates (batch, seq, M) absolute positions or -1;
        present (batch or 1, seq) the new tokens' own positions; `layer_cache`: keys and values of
        the earlier positions, extended here (None: z is the whole text)."""
        batch, seq, dim = z.shape
        memory = candidates.shape[-1]
        q = self.q_proj(z).view(batch, seq, self.heads, self.head_dim)
        k, v = self.k_proj(z), self.v_proj(z)
        if layer_cache is not None:
            k, v = layer_cache.extend("key", k, 1), layer_cache.extend("value", v, 1)
        usable = (candidates >= 0) & (candidates + 1 < present[..., None])  # what followed c lies strictly before t

        def pick(states, index):  # (batch, total, dim) at (batch, seq, M) -> (batch, seq, M, heads, head_dim)
            flat = index.reshape(batch, seq * memory, 1).expand(-1, -1, dim)
            return states.gather(1, flat).view(batch, seq, memory, self.heads, self.head_dim)

        keys = pick(k, candidates.clamp_min(0))
        values = pick(v, (candidates + 1).clamp(0, v.shape[1] - 1))
        scale = math.sqrt(self.head_dim)
        scores = torch.einsum("bthd,btmhd->bthm", q, keys) / scale
        scores = scores.masked_fill(~usable[:, :, None, :], float("-inf"))
        sink = torch.einsum("bthd,hd->bth", q, self.sink_key.to(q.dtype)) / scale
        weights = torch.cat([scores, sink[..., None]], -1).float().softmax(-1).to(values.dtype)
        out = torch.einsum("bthm,btmhd->bthd", weights[..., :memory], values)
        out = out + weights[..., memory, None] * self.sink_value.to(values.dtype)
        return self.o_proj(out.reshape(batch, seq, dim))


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

    def forward(self, hidden_states, context, layer_cache=None):
        """context: (candidate positions, keep mask or None, the new tokens' positions); `layer_cache`
        (conv tails, keys and values of earlier positions) is read and updated in place when given."""
        candidates, keep, present = context

        def masked(h):
            return h if keep is None else h * keep

        tails = layer_cache.get("conv") if layer_cache is not None else None
        conv_out, tails = self.conv(self.conv_norm(hidden_states), keep, tails)
        h = masked(hidden_states + conv_out)
        h = masked(h + self.induction(self.induction_norm(h), candidates, present, layer_cache))
        if layer_cache is not None:
            layer_cache["conv"] = tuple(tails)
        return masked(h + self.mlp(self.mlp_norm(h)))


class BabbleInductionPreTrainedModel(BabblePreTrainedModel):
    config_class = BabbleInductionConfig
    _no_split_modules = ["InductionLayer"]

    def _init_module(self, module):
        """Sink keys and values Normal(0, initializer_range)."""
        if isinstance(module, InductionMixer):
            init.normal_(module.sink_key, mean=0.0, std=self.config.initializer_range)
            init.normal_(module.sink_value, mean=0.0, std=self.config.initializer_range)


class BabbleInductionModel(BabbleDecoder, BabbleInductionPreTrainedModel):
    """Token + learned position embeddings, the layers and the final LayerNorm; returns hidden states."""

    def __init__(self, config: BabbleInductionConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embed_positions.init_std = 0.0  # the position table starts at zero
        self.layers = nn.ModuleList(InductionLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size)  # eps 1e-5
        self.post_init()

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """Token + position embeddings; context: each new position's candidate earlier positions and
        which positions are real (None: no padding)."""
        if input_ids is None:
            raise ValueError("the induction model needs input_ids: its occurrence index matches token ids")
        seq = input_ids.shape[1]
        limit = self.config.max_position_embeddings
        if total_length(past, seq) > limit:
            raise ValueError(f"sequence of {total_length(past, seq)} tokens (cache included) exceeds "
                             f"max_position_embeddings={limit}: this model's positions are a learned table of {limit} "
                             "entries")
        columns = new_positions(past, seq, input_ids.device)  # where the new tokens sit in the keys and values
        if attention_mask is None:
            positions, keep, keys = columns, None, input_ids
        else:
            positions = position_ids_from_mask(attention_mask, seq)
            real = attention_mask[:, past:].bool()
            keep = None if bool(real.all()) else real[..., None].to(self.embed_tokens.weight.dtype)
            keys = torch.where(real, input_ids, -1)
        memory = self.config.induction_memory
        if cache is not None:
            candidates = cached_candidates(cache, keys, memory, self.config.vocab_size, past)
        else:
            candidates = previous_occurrences(keys, memory)[0]
        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)
        if keep is not None:
            hidden = hidden * keep
        return hidden, (candidates, keep, columns)


class BabbleInductionForCausalLM(CausalLMHead, BabbleInductionPreTrainedModel, GenerationMixin):
    """The model plus a vocabulary head (tied to the input embeddings if configured)."""

    decoder_class = BabbleInductionModel
